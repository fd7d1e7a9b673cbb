/**
 * POST /v1/completions: one prompt (text, or token ids), OpenAI's parameters plus vLLM's
 * extensions; a JSON response, or server-sent events with `data: [DONE]` at the end. `logprobs`
 * (an integer, 0..20) gives tokens, token_logprobs, top_logprobs and text_offset.
 */
import { invalidArgument } from "@expertmesh/shared";
import type { GenerationChunk, GenerationRequest, GenerationUsage } from "../core/generation.ts";
import { allChunks, startGeneration } from "./http-call.ts";
import type { HttpCall } from "./http-call.ts";
import { SseWriter, finishReasonText, usageBody } from "./openai-format.ts";
import { BodyParams, readCommonOptions, readCompletionPrompt, readMaxTokens } from "./openai-params.ts";
import type { JsonObject } from "./openai-params.ts";
import { newRequestId } from "./request-id.ts";
import { checkModel } from "./served-model.ts";

/** OpenAI's default max_tokens for completions. */
const DEFAULT_MAX_TOKENS = 16;

const RENAME = { top_logprobs: "logprobs", "sampling.max_tokens": "max_tokens" } as const;

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export async function handleCompletions(call: HttpCall, body: JsonObject): Promise<void> {
  const p = new BodyParams(body);
  const model = checkModel(p, call.generation.model.name);
  const options = readCommonOptions(p, readMaxTokens(p, "max_tokens", DEFAULT_MAX_TOKENS));
  p.unsupported("echo", (v) => v === false, "echo is not supported");
  p.unsupported("suffix", (v) => v === "", "suffix is not supported");
  const logprobs = p.has("logprobs") ? p.int("logprobs", 0) : undefined;
  if (logprobs !== undefined && logprobs < 0)
    throw invalidArgument("logprobs", `must be in [0, 20], got ${logprobs}`);
  const request: GenerationRequest = {
    requestId: call.requestId ?? newRequestId("cmpl"),
    prompt: readCompletionPrompt(p),
    sampling: options.sampling,
    logprobs: logprobs !== undefined,
    topLogprobs: logprobs ?? 0,
    priority: options.priority,
  };
  const started = await startGeneration(call, request, RENAME);
  const created = Math.floor(Date.now() / 1000);
  const head = { id: request.requestId, object: "text_completion", created, model };
  const asIds = options.returnTokensAsTokenIds;
  const offsets = { next: 0 };
  const toLogprobs = (chunk: GenerationChunk): CompletionLogprobs | null =>
    chunk.logprobs === undefined ? null : completionLogprobs(call, chunk, asIds, offsets);

  if (!options.stream) {
    let text = "";
    const tokenIds: number[] = [];
    const lp: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    let finish: GenerationChunk | undefined;
    for await (const chunk of allChunks(started)) {
      text += chunk.text;
      tokenIds.push(...chunk.tokenIds);
      const l = toLogprobs(chunk);
      if (l !== null) {
        lp.tokens.push(...l.tokens);
        lp.token_logprobs.push(...l.token_logprobs);
        lp.top_logprobs.push(...l.top_logprobs);
        lp.text_offset.push(...l.text_offset);
      }
      if (chunk.finishReason !== undefined) finish = chunk;
    }
    const usage: GenerationUsage = finish?.usage ?? { promptTokens: 0, completionTokens: tokenIds.length };
    sendJson(call, {
      ...head,
      choices: [
        {
          index: 0,
          text,
          logprobs: request.logprobs ? lp : null,
          finish_reason: finishReasonText(finish?.finishReason),
          ...(options.returnTokenIds ? { token_ids: tokenIds } : {}),
        },
      ],
      usage: usageBody(usage),
    });
    return;
  }

  const sse = new SseWriter(call.res, { "x-request-id": request.requestId });
  try {
    for await (const chunk of allChunks(started)) {
      if (chunk.finishReason === undefined && chunk.tokenIds.length === 0 && chunk.text === "") continue;
      await sse.send({
        ...head,
        choices: [
          {
            index: 0,
            text: chunk.text,
            logprobs: toLogprobs(chunk),
            finish_reason: finishReasonText(chunk.finishReason),
            ...(options.returnTokenIds ? { token_ids: chunk.tokenIds } : {}),
          },
        ],
        usage: null,
      });
      if (chunk.finishReason !== undefined && options.includeUsage && chunk.usage !== undefined) {
        await sse.send({ ...head, choices: [], usage: usageBody(chunk.usage) });
      }
    }
  } catch (err) {
    await sse.fail(err);
  }
  sse.end();
}

function completionLogprobs(
  call: HttpCall,
  chunk: GenerationChunk,
  asIds: boolean,
  offsets: { next: number },
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const l of chunk.logprobs ?? []) {
    const token = call.tokenNamer.name(l.tokenId, asIds);
    out.tokens.push(token);
    out.token_logprobs.push(l.logprob);
    const top: Record<string, number> = {};
    for (const alt of l.top) {
      const name = call.tokenNamer.name(alt.tokenId, asIds);
      // Two ids with the same text: keep the likelier (the first, as the list is sorted).
      if (!(name in top)) top[name] = alt.logprob;
    }
    out.top_logprobs.push(top);
    out.text_offset.push(offsets.next);
    offsets.next += token.length;
  }
  return out;
}

export function sendJson(call: HttpCall, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  call.res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...(call.requestId === undefined ? {} : { "x-request-id": call.requestId }),
  });
  call.res.end(text);
}
