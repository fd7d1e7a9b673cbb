/**
 * `expertmesh generate`: one prompt through the single-process engine, tokens streamed to
 * stdout as they are sampled (text when the checkpoint has a tokenizer, else token ids).
 */
import { Engine, EngineCore, type EngineCoreOutput, type SamplingOptions } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { loadTokenizer, type TextTokenizer } from "@expertmesh/tokenizer";
import { parseCommandArgs, withUsage } from "../command-args.ts";

const USAGE = `usage: expertmesh generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]

Streams the tokens the model generates for one prompt to stdout.

options:
  --model DIR          checkpoint directory (Hugging Face layout)
  --prompt TEXT        prompt text (needs tokenizer.json in DIR; BOS is prepended when the tokenizer has one)
  --prompt-ids IDS     prompt as comma-separated token ids
  --max-tokens N       tokens to generate at most (default 16)
  --temperature T      0 = greedy (default 1)
  --top-k K            keep the K most likely tokens (default off)
  --top-p P            nucleus sampling mass in (0, 1] (default 1: off)
  --min-p P            drop tokens below P × the top probability (default 0: off)
  --seed S             seed of the request's sampler (default random)
  --ignore-eos         keep going past the end-of-sequence token
  --logprobs N         print one JSON line per token with its logprob and the top N
  --threads N          onnxruntime intra-op threads (default 2; 0 = onnxruntime's choice)
  -h, --help           show this help`;

const usageError = withUsage(USAGE);

function parseNumber(flag: string, text: string | undefined, integer: boolean): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || (integer && !Number.isSafeInteger(value))) {
    throw usageError(`--${flag} must be ${integer ? "an integer" : "a number"}, got '${text}'`);
  }
  return value;
}

function parsePromptIds(text: string): number[] {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.some((p) => !/^\d+$/.test(p)))
    throw usageError(`--prompt-ids must be comma-separated non-negative integers, got '${text}'`);
  return parts.map(Number);
}

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      model: { type: "string" },
      prompt: { type: "string" },
      "prompt-ids": { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      "min-p": { type: "string" },
      seed: { type: "string" },
      "ignore-eos": { type: "boolean" },
      logprobs: { type: "string" },
      threads: { type: "string" },
    },
    USAGE,
    usageError,
  );
  if (values === null) return;
  const modelDir = values.model;
  if (modelDir === undefined || modelDir === "") throw usageError("--model is required");
  const promptText = values.prompt;
  const promptIdsText = values["prompt-ids"];
  if ((promptText === undefined) === (promptIdsText === undefined))
    throw usageError("give exactly one of --prompt and --prompt-ids");
  const threads = parseNumber("threads", values.threads, true) ?? 2;
  const logprobs = parseNumber("logprobs", values.logprobs, true);
  const sampling: SamplingOptions = {
    maxTokens: parseNumber("max-tokens", values["max-tokens"], true) ?? 16,
    temperature: parseNumber("temperature", values.temperature, false) ?? 1,
    ignoreEos: values["ignore-eos"] === true,
  };
  const topK = parseNumber("top-k", values["top-k"], true);
  const topP = parseNumber("top-p", values["top-p"], false);
  const minP = parseNumber("min-p", values["min-p"], false);
  const seed = parseNumber("seed", values.seed, true);
  if (topK !== undefined) sampling.topK = topK;
  if (topP !== undefined) sampling.topP = topP;
  if (minP !== undefined) sampling.minP = minP;
  if (seed !== undefined) sampling.seed = seed;
  if (logprobs !== undefined) sampling.logprobs = logprobs;

  const tokenizer = await loadTokenizer(modelDir);
  let promptIds: number[];
  if (promptText !== undefined) {
    if (tokenizer === null) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `${modelDir} has no tokenizer.json, so it takes token ids only: use --prompt-ids 1,2,3`,
      );
    }
    promptIds = tokenizer.encode(promptText);
    if (tokenizer.bosId !== null) promptIds.unshift(tokenizer.bosId);
  } else {
    promptIds = parsePromptIds(promptIdsText!);
  }

  const t0 = performance.now();
  const model = await loadModel(modelDir, { threads });
  process.stderr.write(`loaded ${modelDir} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once("SIGINT", onSigint);
  try {
    // A cache for exactly this request (plus a block of slack for rounding).
    const blockSize = 16;
    const needed = Math.min(promptIds.length + sampling.maxTokens!, model.config.maxPositionEmbeddings);
    const core = new EngineCore(model, { blockSize, numKvBlocks: Math.ceil(needed / blockSize) + 1 });
    const engine = new Engine(core);
    await streamOutputs(engine, promptIds, sampling, tokenizer, controller.signal);
  } finally {
    process.off("SIGINT", onSigint);
    await model.release();
  }
}

async function streamOutputs(
  engine: Engine,
  promptIds: number[],
  sampling: SamplingOptions,
  tokenizer: TextTokenizer | null,
  signal: AbortSignal,
): Promise<void> {
  const decoder = tokenizer?.createIncrementalDecoder({ promptIds }) ?? null;
  const jsonLines = sampling.logprobs !== undefined;
  const out = process.stdout;
  const start = performance.now();
  let firstTokenAt = 0;
  let last: EngineCoreOutput | null = null;
  let count = 0;
  try {
    for await (const output of engine.generate({ promptTokenIds: promptIds, sampling }, { signal })) {
      last = output;
      output.newTokenIds.forEach((id, i) => {
        if (count++ === 0) firstTokenAt = performance.now();
        const text = decoder?.push(id);
        if (jsonLines) {
          const lp = output.logprobs?.[i];
          const line = {
            id,
            ...(text !== undefined ? { text } : {}),
            ...(lp !== undefined
              ? {
                  logprob: lp.chosen.logprob,
                  rank: lp.chosen.rank,
                  top: lp.top.map((t) => ({ id: t.tokenId, logprob: t.logprob })),
                }
              : {}),
          };
          out.write(`${JSON.stringify(line)}\n`);
        } else {
          out.write(text ?? `${count === 1 ? "" : " "}${id}`);
        }
      });
    }
  } catch (err) {
    if (!(err instanceof ExpertMeshError && err.code === Code.CANCELLED)) throw err;
    process.stderr.write("\n[cancelled]\n");
    return;
  }
  const tail = decoder?.flush() ?? "";
  if (!jsonLines) out.write(`${tail}\n`);
  const end = performance.now();
  const decodeTokS = count > 1 ? ((count - 1) / ((end - firstTokenAt) / 1000)).toFixed(1) : "-";
  process.stderr.write(
    `[finish: ${last?.finishReason ?? "?"}; prompt ${promptIds.length} tokens, generated ${count}; ` +
      `first token ${(firstTokenAt - start).toFixed(0)} ms, decode ${decodeTokS} tok/s]\n`,
  );
}
