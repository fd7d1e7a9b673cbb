/**
 * `expertmesh inspect`: run a prompts file through a checkpoint with the exact float32 forward
 * pass and write the results (logits, greedy steps, routing, hidden states) in the golden.json
 * schema of the test fixtures, for shared/tools/compare_golden.py.
 */
import { writeFile } from "node:fs/promises";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import { forcedTokensFromResult, inspectPrompts, loadModel, parsePromptsFile } from "@expertmesh/model";
import { parseCommandArgs, readJsonFile, seeHelp } from "../command-args.ts";

const HELP = `usage: expertmesh inspect --model DIR --prompts FILE --out FILE [options]

Runs every prompt of FILE ({"prompts": [{"name", "tokens", "max_new_tokens"}]}) through the
checkpoint in DIR: one prefill of the whole prompt from position 0, then greedy decoding one token
at a time through the KV cache for max_new_tokens steps (no stop at EOS). Writes logits (top-5 at
every prompt position, full logits at the last one and at every step), routing per MoE layer
(experts, weights, groups, margins, router inputs) and hidden states in the golden.json schema.

options:
  --model DIR          checkpoint directory (config.json + safetensors, BF16 or FP8)
  --prompts FILE       prompts file
  --out FILE           result file to write
  --teacher-force      feed given tokens back instead of the argmax and record them as
                       greedy.fed_tokens (the argmax is still reported as greedy.generated).
                       The tokens are each prompt's "forced_tokens" list in the prompts file
                       (at least max_new_tokens - 1 ids; prompts.json itself has none)
  --forced-from FILE   teacher-force with the tokens of a previous result file in this schema
                       instead: its greedy.generated per prompt (matched by position, same
                       prompt tokens required); implies --teacher-force
  --threads N          onnxruntime intra-op threads (default: onnxruntime's choice)
  --ep NAME            onnxruntime execution provider (default: cpu)
  -h, --help           show this help`;

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      model: { type: "string" },
      prompts: { type: "string" },
      out: { type: "string" },
      "teacher-force": { type: "boolean" },
      "forced-from": { type: "string" },
      threads: { type: "string" },
      ep: { type: "string" },
    },
    HELP,
    seeHelp,
  );
  if (values === null) return;
  for (const required of ["model", "prompts", "out"] as const) {
    if (values[required] === undefined)
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `--${required} is required (see --help)`);
  }
  const threads = values.threads === undefined ? 0 : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 0)
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `--threads must be a non-negative integer, got ${values.threads}`,
    );

  const promptsPath = values.prompts as string;
  let prompts = parsePromptsFile(await readJsonFile(promptsPath, "prompts file"), promptsPath);
  if (values["forced-from"] !== undefined) {
    const from = values["forced-from"];
    prompts = forcedTokensFromResult(prompts, await readJsonFile(from, "result file"), from);
  }
  const teacherForce = values["teacher-force"] === true || values["forced-from"] !== undefined;

  const model = await loadModel(values.model as string, { executionProvider: values.ep ?? "cpu", threads });
  try {
    const report = await inspectPrompts(model, prompts, { teacherForce });
    await writeFile(values.out as string, JSON.stringify(report));
  } finally {
    await model.release();
  }
}
