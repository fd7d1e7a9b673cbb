/**
 * OpenAI request bodies → GenerationRequests. Every malformed parameter is INVALID_ARGUMENT
 * naming it as the client wrote it (`param` in the error body); the core's field names
 * ("sampling.top_p", "top_logprobs", …) are mapped back to OpenAI parameter names here.
 * vLLM's extensions are accepted: top_k, min_p, stop_token_ids, ignore_eos,
 * return_tokens_as_token_ids, return_token_ids, priority ("batch").
 */
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { ChatMessage, ChatRole } from "../core/chat-template.ts";
import type { GenerationPrompt, SamplingOptions } from "../core/generation.ts";

export type JsonObject = Record<string, unknown>;

/** Typed reads of one JSON body, with the parameter named in every error. */
export class BodyParams {
  constructor(readonly body: JsonObject) {}

  has(name: string): boolean {
    return this.body[name] !== undefined && this.body[name] !== null;
  }

  number(name: string, fallback: number): number {
    const v = this.body[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v))
      throw invalidArgument(name, `must be a number, got ${describe(v)}`);
    return v;
  }

  int(name: string, fallback: number): number {
    const v = this.number(name, fallback);
    if (!Number.isSafeInteger(v)) throw invalidArgument(name, `must be an integer, got ${v}`);
    return v;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.body[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") throw invalidArgument(name, `must be true or false, got ${describe(v)}`);
    return v;
  }

  string(name: string): string | undefined {
    const v = this.body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw invalidArgument(name, `must be a string, got ${describe(v)}`);
    return v;
  }

  intList(name: string): number[] {
    const v = this.body[name];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x)))
      throw invalidArgument(name, "must be an array of integers");
    return v as number[];
  }

  /** `stop`: a string, an array of strings, or null. */
  stop(): string[] {
    const v = this.body.stop;
    if (v === undefined || v === null) return [];
    if (typeof v === "string") return [v];
    if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v;
    throw invalidArgument("stop", "must be a string or an array of strings");
  }

  object(name: string): JsonObject | undefined {
    const v = this.body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v))
      throw invalidArgument(name, `must be an object, got ${describe(v)}`);
    return v as JsonObject;
  }

  /** A parameter this server does not implement must keep its neutral value. */
  unsupported(name: string, neutral: (v: unknown) => boolean, what = "is not supported"): void {
    const v = this.body[name];
    if (v !== undefined && v !== null && !neutral(v)) throw invalidArgument(name, what);
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return typeof v === "object" ? "an object" : typeof v;
}

/** Options both endpoints share. */
export interface CommonOptions {
  readonly sampling: SamplingOptions;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly returnTokensAsTokenIds: boolean;
  readonly returnTokenIds: boolean;
  readonly priority: "interactive" | "batch";
}

/** Sampling and streaming parameters of either endpoint (`maxTokensParam` differs: chat has two names). */
export function readCommonOptions(p: BodyParams, maxTokens: number): CommonOptions {
  const n = p.int("n", 1);
  if (n !== 1) throw invalidArgument("n", "only n = 1 is supported");
  p.unsupported("best_of", (v) => v === 1, "only best_of = 1 is supported");
  for (const name of ["presence_penalty", "frequency_penalty"]) p.unsupported(name, (v) => v === 0);
  p.unsupported("repetition_penalty", (v) => v === 1);
  p.unsupported("logit_bias", (v) => typeof v === "object" && v !== null && Object.keys(v).length === 0);
  const seed = p.has("seed") ? p.int("seed", 0) : undefined;
  if (seed !== undefined && seed < 0) throw invalidArgument("seed", `must be ≥ 0, got ${seed}`);
  const stream = p.bool("stream", false);
  const streamOptions = p.object("stream_options");
  if (streamOptions !== undefined && !stream)
    throw invalidArgument("stream_options", "is only allowed with stream: true");
  const includeUsage =
    streamOptions === undefined ? false : new BodyParams(streamOptions).bool("include_usage", false);
  const priority = p.string("priority") ?? "interactive";
  if (priority !== "interactive" && priority !== "batch")
    throw invalidArgument("priority", `must be "interactive" or "batch", got ${JSON.stringify(priority)}`);
  return {
    sampling: {
      // OpenAI's defaults: temperature 1, top_p 1.
      temperature: p.number("temperature", 1),
      topP: p.number("top_p", 1),
      topK: p.int("top_k", 0),
      ...(p.has("min_p") ? { minP: p.number("min_p", 0) } : {}),
      ...(seed === undefined ? {} : { seed: BigInt(seed) }),
      maxTokens,
      stop: p.stop(),
      stopTokenIds: p.intList("stop_token_ids"),
      ignoreEos: p.bool("ignore_eos", false),
    },
    stream,
    includeUsage,
    returnTokensAsTokenIds: p.bool("return_tokens_as_token_ids", false),
    returnTokenIds: p.bool("return_token_ids", false),
    priority,
  };
}

/** A max_tokens-style parameter: null/absent → 0 (the server's default), else an integer ≥ 1. */
export function readMaxTokens(p: BodyParams, name: string, fallback: number): number {
  if (!p.has(name)) return fallback;
  const v = p.int(name, fallback);
  if (v < 1) throw invalidArgument(name, `must be at least 1, got ${v}`);
  return v;
}

/** `prompt` of /v1/completions: a string, a token id array, or a one-element list of either. */
export function readCompletionPrompt(p: BodyParams): GenerationPrompt {
  let v = p.body.prompt;
  if (v === undefined || v === null) throw invalidArgument("prompt", "is required");
  // A list holding one prompt is the same prompt; several prompts are several requests.
  if (Array.isArray(v) && v.length === 1 && (typeof v[0] === "string" || Array.isArray(v[0]))) v = v[0];
  if (typeof v === "string") return { text: v };
  if (Array.isArray(v)) {
    if (v.length > 0 && (typeof v[0] === "string" || Array.isArray(v[0])))
      throw invalidArgument("prompt", "only one prompt per request is supported");
    if (!v.every((x) => Number.isSafeInteger(x)))
      throw invalidArgument("prompt", "must be a string or an array of token ids (integers)");
    return { tokenIds: v as number[] };
  }
  throw invalidArgument("prompt", "must be a string or an array of token ids");
}

const ROLES: ReadonlySet<string> = new Set<ChatRole>(["system", "developer", "user", "assistant"]);

/** `messages` of /v1/chat/completions: roles and text content (a string or text parts). */
export function readChatMessages(p: BodyParams): ChatMessage[] {
  const v = p.body.messages;
  if (!Array.isArray(v)) throw invalidArgument("messages", "must be an array of messages");
  return v.map((m: unknown, i) => {
    const where = `messages[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m))
      throw invalidArgument("messages", `${where} must be an object`);
    const { role, content } = m as JsonObject;
    if (typeof role !== "string" || !ROLES.has(role)) {
      throw invalidArgument(
        "messages",
        `${where}.role must be one of system, developer, user, assistant; got ${JSON.stringify(role)}${role === "tool" ? " (tool calls are not supported)" : ""}`,
      );
    }
    return { role: role as ChatRole, content: readContent(content, role, where) };
  });
}

function readContent(content: unknown, role: string, where: string): string {
  if (typeof content === "string") return content;
  if ((content === null || content === undefined) && role === "assistant") return "";
  if (Array.isArray(content)) {
    return content
      .map((part: unknown, j) => {
        const t = part as JsonObject | null;
        if (typeof t !== "object" || t === null || t.type !== "text" || typeof t.text !== "string") {
          throw invalidArgument(
            "messages",
            `${where}.content[${j}] must be a text part ({"type": "text", "text": …}); only text is supported`,
          );
        }
        return t.text;
      })
      .join("");
  }
  throw invalidArgument("messages", `${where}.content must be a string or an array of text parts`);
}

/**
 * A core validation error with its field renamed for the HTTP client ("sampling.top_p" →
 * "top_p"); other errors pass unchanged.
 */
export function toHttpParamError(err: unknown, rename: Readonly<Record<string, string>>): unknown {
  if (!(err instanceof ExpertMeshError) || err.code !== Code.INVALID_ARGUMENT) return err;
  const field = err.details.field;
  if (field === undefined) return err;
  const param = rename[field] ?? (field.startsWith("sampling.") ? field.slice("sampling.".length) : field);
  if (param === field) return err;
  const message = err.message.startsWith(`${field}: `)
    ? `${param}: ${err.message.slice(field.length + 2)}`
    : err.message;
  return new ExpertMeshError(err.code, message, { details: { ...err.details, field: param }, cause: err });
}
