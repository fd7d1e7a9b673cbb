/**
 * What one OpenAI endpoint call has to work with, and the start of a generation: the first chunk
 * is awaited before any response header is written, so validation, overload (429) and
 * unavailability (503) become real HTTP statuses even for streamed requests.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import type { GenerationChunk, GenerationRequest, GenerationService } from "../core/generation.ts";
import { toHttpParamError } from "./openai-params.ts";
import type { TokenNamer } from "./openai-format.ts";

export interface HttpCall {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Aborted when the client disconnects before the response is complete. */
  readonly signal: AbortSignal;
  /** From the X-Request-Id header, when the client sent one. */
  readonly requestId: string | undefined;
  readonly generation: GenerationService;
  readonly tokenizer: TextTokenizer | null;
  readonly tokenNamer: TokenNamer;
}

export interface StartedGeneration {
  /** The first chunk (a generation always yields at least its final chunk). */
  readonly first: GenerationChunk;
  /** The chunks after the first. */
  readonly rest: AsyncIterable<GenerationChunk>;
}

/** Starts `request` and waits for its first chunk; core field names in errors become `rename`'s params. */
export async function startGeneration(
  call: HttpCall,
  request: GenerationRequest,
  rename: Readonly<Record<string, string>>,
): Promise<StartedGeneration> {
  const it = call.generation.generate(request, call.signal)[Symbol.asyncIterator]();
  let first: IteratorResult<GenerationChunk>;
  try {
    first = await it.next();
  } catch (err) {
    throw toHttpParamError(err, rename);
  }
  if (first.done === true) {
    // Not reachable with GenerationEngine (it always ends with a final chunk); stay total anyway.
    return { first: { tokenIds: [], text: "", finishReason: "cancelled" }, rest: emptyStream() };
  }
  return {
    first: first.value,
    rest: {
      [Symbol.asyncIterator]: () => it,
    },
  };
}

async function* emptyStream(): AsyncGenerator<GenerationChunk> {}

/** Every chunk, first included. */
export async function* allChunks(started: StartedGeneration): AsyncGenerator<GenerationChunk> {
  yield started.first;
  yield* started.rest;
}
