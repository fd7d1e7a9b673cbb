/**
 * POST /v1/chat/completions: messages → prompt through the chat template (core/chat-template.ts),
 * then the same generation as completions. A JSON response, or server-sent events: a first delta
 * with the assistant role, content deltas, a last chunk with finish_reason, an optional usage
 * chunk (stream_options.include_usage), `data: [DONE]`. logprobs (bool) + top_logprobs (0..20).
 */
import { invalidArgument } from "@expertmesh/shared";
import { renderChatPrompt } from "../core/chat-template.ts";
import type { GenerationChunk, GenerationRequest, GenerationUsage } from "../core/generation.ts";
import { allChunks, startGeneration } from "./http-call.ts";
import type { HttpCall } from "./http-call.ts";
import { SseWriter, finishReasonText, usageBody, utf8Bytes } from "./openai-format.ts";
import { BodyParams, readChatMessages, readCommonOptions, readMaxTokens } from "./openai-params.ts";
import type { JsonObject } from "./openai-params.ts";
import { newRequestId } from "./request-id.ts";
import { checkModel } from "./served-model.ts";
import { sendJson } from "./openai-completions.ts";

interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export async function handleChatCompletions(call: HttpCall, body: JsonObject): Promise<void> {
  const p = new BodyParams(body);
  const model = checkModel(p, call.generation.model.name);
  // max_completion_tokens is OpenAI's current name; max_tokens the deprecated one.
  const maxTokensParam = p.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const options = readCommonOptions(p, readMaxTokens(p, maxTokensParam, 0));
  p.unsupported("tools", (v) => Array.isArray(v) && v.length === 0, "tool calls are not supported");
  p.unsupported(
    "response_format",
    (v) => (v as { type?: unknown }).type === "text",
    'only response_format {type: "text"} is supported',
  );
  const logprobs = p.bool("logprobs", false);
  const topLogprobs = p.has("top_logprobs") ? p.int("top_logprobs", 0) : 0;
  if (topLogprobs < 0) throw invalidArgument("top_logprobs", `must be in [0, 20], got ${topLogprobs}`);
  if (topLogprobs > 0 && !logprobs) throw invalidArgument("top_logprobs", "needs logprobs: true");
  const messages = readChatMessages(p);
  const tokenizer = call.tokenizer;
  if (tokenizer === null)
    throw invalidArgument(
      "messages",
      "the model has no tokenizer (no tokenizer.json): use /v1/completions with token ids",
    );
  const special = (id: number | null): string =>
    id === null ? "" : tokenizer.decode([id], { skipSpecialTokens: false });
  const prompt = renderChatPrompt(messages, { bos: special(tokenizer.bosId), eos: special(tokenizer.eosId) });
  const request: GenerationRequest = {
    requestId: call.requestId ?? newRequestId("chatcmpl"),
    prompt: { text: prompt, addBos: false },
    sampling: options.sampling,
    logprobs,
    topLogprobs,
    priority: options.priority,
  };
  const started = await startGeneration(call, request, {
    prompt: "messages",
    "sampling.max_tokens": maxTokensParam,
  });
  const created = Math.floor(Date.now() / 1000);
  const asIds = options.returnTokensAsTokenIds;
  const toLogprobs = (chunk: GenerationChunk): { content: ChatTokenLogprob[] } | null =>
    logprobs && chunk.logprobs !== undefined ? { content: chatLogprobs(call, chunk, asIds) } : null;

  if (!options.stream) {
    let content = "";
    const tokenIds: number[] = [];
    const lp: ChatTokenLogprob[] = [];
    let finish: GenerationChunk | undefined;
    for await (const chunk of allChunks(started)) {
      content += chunk.text;
      tokenIds.push(...chunk.tokenIds);
      lp.push(...(toLogprobs(chunk)?.content ?? []));
      if (chunk.finishReason !== undefined) finish = chunk;
    }
    const usage: GenerationUsage = finish?.usage ?? { promptTokens: 0, completionTokens: tokenIds.length };
    sendJson(call, {
      id: request.requestId,
      object: "chat.completion",
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content },
          logprobs: logprobs ? { content: lp } : null,
          finish_reason: finishReasonText(finish?.finishReason),
          ...(options.returnTokenIds ? { token_ids: tokenIds } : {}),
        },
      ],
      usage: usageBody(usage),
    });
    return;
  }

  const head = { id: request.requestId, object: "chat.completion.chunk", created, model };
  const sse = new SseWriter(call.res, { "x-request-id": request.requestId });
  try {
    await sse.send({
      ...head,
      choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
    });
    for await (const chunk of allChunks(started)) {
      if (chunk.finishReason === undefined && chunk.tokenIds.length === 0 && chunk.text === "") continue;
      await sse.send({
        ...head,
        choices: [
          {
            index: 0,
            delta: chunk.text === "" && chunk.finishReason !== undefined ? {} : { content: chunk.text },
            logprobs: toLogprobs(chunk),
            finish_reason: finishReasonText(chunk.finishReason),
            ...(options.returnTokenIds ? { token_ids: chunk.tokenIds } : {}),
          },
        ],
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

function chatLogprobs(call: HttpCall, chunk: GenerationChunk, asIds: boolean): ChatTokenLogprob[] {
  return (chunk.logprobs ?? []).map((l) => {
    const token = call.tokenNamer.name(l.tokenId, asIds);
    return {
      token,
      logprob: l.logprob,
      bytes: utf8Bytes(token),
      top_logprobs: l.top.map((alt) => {
        const name = call.tokenNamer.name(alt.tokenId, asIds);
        return { token: name, logprob: alt.logprob, bytes: utf8Bytes(name) };
      }),
    };
  });
}
