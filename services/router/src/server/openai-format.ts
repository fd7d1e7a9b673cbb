/**
 * Pieces of the OpenAI wire format both endpoints share: error bodies (status from the one
 * error mapping, toWireStatus), finish reasons, usage, token strings for logprobs, and the
 * server-sent-events writer.
 */
import type { ServerResponse } from "node:http";
import { toWireStatus } from "@expertmesh/shared";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import type { FinishReason, GenerationUsage } from "../core/generation.ts";

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

const ERROR_TYPE: Readonly<Partial<Record<number, string>>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  499: "cancelled",
  503: "service_unavailable",
  504: "timeout",
};

/** The HTTP status and OpenAI-style body of any failure (as vLLM: `code` repeats the HTTP status). */
export function openAiError(err: unknown): { status: number; body: OpenAiErrorBody } {
  const wire = toWireStatus(err);
  const status = wire.httpStatus;
  return {
    status,
    body: {
      error: {
        message: wire.message,
        type: ERROR_TYPE[status] ?? (status >= 500 ? "server_error" : "invalid_request_error"),
        param: wire.details.field ?? null,
        code: status,
      },
    },
  };
}

/** Convenience for errors raised by the HTTP layer itself (no ExpertMeshError at hand). */
export function httpError(
  status: number,
  message: string,
  type = ERROR_TYPE[status] ?? "invalid_request_error",
): {
  status: number;
  body: OpenAiErrorBody;
} {
  return { status, body: { error: { message, type, param: null, code: status } } };
}

/** OpenAI's finish_reason; a cancelled request reads "abort" as in vLLM. */
export function finishReasonText(reason: FinishReason | undefined): string | null {
  if (reason === undefined) return null;
  return reason === "cancelled" ? "abort" : reason;
}

export function usageBody(usage: GenerationUsage): {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
} {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
  };
}

/**
 * Token strings for logprobs: the token's own text (special tokens included), or vLLM's
 * `token_id:N` when asked (return_tokens_as_token_ids) or when the model has no tokenizer.
 */
export class TokenNamer {
  readonly #tokenizer: TextTokenizer | null;
  readonly #cache = new Map<number, string>();

  constructor(tokenizer: TextTokenizer | null) {
    this.#tokenizer = tokenizer;
  }

  name(tokenId: number, asTokenIds: boolean): string {
    if (asTokenIds || this.#tokenizer === null) return `token_id:${tokenId}`;
    let text = this.#cache.get(tokenId);
    if (text === undefined) {
      text =
        tokenId < this.#tokenizer.vocabSize
          ? this.#tokenizer.decode([tokenId], { skipSpecialTokens: false })
          : "";
      if (this.#cache.size < 100_000) this.#cache.set(tokenId, text);
    }
    return text;
  }
}

/** UTF-8 bytes of a token string (chat logprobs' `bytes`). */
export function utf8Bytes(text: string): number[] {
  return [...Buffer.from(text, "utf8")];
}

/** A text/event-stream response: `data: <json>` events, then `data: [DONE]`. */
export class SseWriter {
  readonly #res: ServerResponse;

  constructor(res: ServerResponse, headers: Readonly<Record<string, string>> = {}) {
    this.#res = res;
    res.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    res.flushHeaders();
  }

  /** Writes one event; waits while the socket's buffer is full (a slow client paces generation). */
  async send(data: unknown): Promise<void> {
    if (this.#res.destroyed) return;
    if (!this.#res.write(`data: ${JSON.stringify(data)}\n\n`)) await drainedOrClosed(this.#res);
  }

  /** An error after the stream started: an error event, then the end marker (as vLLM). */
  async fail(err: unknown): Promise<void> {
    await this.send(openAiError(err).body);
  }

  end(): void {
    if (this.#res.destroyed) return;
    this.#res.end("data: [DONE]\n\n");
  }
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}
