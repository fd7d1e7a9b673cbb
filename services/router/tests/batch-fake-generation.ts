/**
 * A small deterministic GenerationService for the batch tests (the batch machinery is what is
 * under test): every prompt character becomes one generated token (its code point), one chunk
 * per token after `tokenDelayMs`, then a final chunk. A fixed number of slots stands for the
 * cluster's attention slots, given out first come first served with NO priority, so a test can
 * show that the batch cap alone leaves room for interactive requests.
 *
 * Prompts steer failures:
 *   "flaky<n>:<text>"  the first n attempts of the request fail with UNAVAILABLE, later ones echo <text>
 *   "busy<n>:<text>"   the same with RESOURCE_EXHAUSTED
 *   "bad:<text>"       INVALID_ARGUMENT
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { GenerationChunk, GenerationRequest, GenerationService } from "../src/core/generation.ts";

export interface GenerateCall {
  readonly request: GenerationRequest;
  readonly calledAt: number;
  /** When it got a slot (undefined while waiting). */
  startedAt: number | undefined;
  /** Whether it found every slot taken and had to wait. */
  queued: boolean;
  endedAt: number | undefined;
  /** How it ended. */
  outcome: "finished" | "cancelled" | "failed" | undefined;
}

export class FakeGeneration implements GenerationService {
  readonly model = { name: "fake-moe", maxModelLen: 4096, vocabSize: 1_114_112 };
  readonly calls: GenerateCall[] = [];
  tokenDelayMs: number;
  readonly #slots: number;
  #used = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #attempts = new Map<string, number>();
  /** Most batch generations holding a slot at once. */
  maxBatchRunning = 0;
  #batchRunning = 0;

  constructor(options: { slots: number; tokenDelayMs: number }) {
    this.#slots = options.slots;
    this.tokenDelayMs = options.tokenDelayMs;
  }

  get running(): number {
    return this.#used;
  }

  callsOf(priority: GenerationRequest["priority"]): GenerateCall[] {
    return this.calls.filter((c) => c.request.priority === priority);
  }

  async *generate(request: GenerationRequest, signal: AbortSignal): AsyncGenerator<GenerationChunk> {
    const call: GenerateCall = {
      request,
      calledAt: Date.now(),
      startedAt: undefined,
      queued: false,
      endedAt: undefined,
      outcome: undefined,
    };
    this.calls.push(call);
    const attempt = (this.#attempts.get(request.requestId) ?? 0) + 1;
    this.#attempts.set(request.requestId, attempt);
    const text =
      "text" in request.prompt ? request.prompt.text : String.fromCodePoint(...request.prompt.tokenIds);
    const failure = /^(flaky|busy)(\d+):/.exec(text);
    try {
      if (text.startsWith("bad:"))
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, "prompt: refused by the fake", {
          details: { field: "prompt" },
        });
      if (failure !== null && attempt <= Number(failure[2])) {
        throw failure[1] === "flaky"
          ? new ExpertMeshError(Code.UNAVAILABLE, "no attention node is available; retry later")
          : new ExpertMeshError(Code.RESOURCE_EXHAUSTED, "the server is overloaded");
      }
      const echoed = [...(failure === null ? text : text.slice(failure[0].length))].map(
        (c) => c.codePointAt(0) ?? 0,
      );
      const maxTokens = request.sampling.maxTokens > 0 ? request.sampling.maxTokens : echoed.length;
      const tokens = echoed.slice(0, maxTokens);
      call.queued = this.#used >= this.#slots;
      if (!(await this.#acquire(signal))) {
        call.outcome = "cancelled";
        yield {
          tokenIds: [],
          text: "",
          finishReason: "cancelled",
          usage: { promptTokens: echoed.length, completionTokens: 0 },
        };
        return;
      }
      call.startedAt = Date.now();
      if (request.priority === "batch")
        this.maxBatchRunning = Math.max(this.maxBatchRunning, ++this.#batchRunning);
      try {
        for (const [i, id] of tokens.entries()) {
          try {
            await sleep(this.tokenDelayMs, undefined, { signal });
          } catch {
            call.outcome = "cancelled";
            yield {
              tokenIds: [],
              text: "",
              finishReason: "cancelled",
              usage: { promptTokens: echoed.length, completionTokens: i },
            };
            return;
          }
          yield {
            tokenIds: [id],
            text: String.fromCodePoint(id),
            ...(request.logprobs ? { logprobs: [{ tokenId: id, logprob: -0.5, top: [] }] } : {}),
          };
        }
        call.outcome = "finished";
        yield {
          tokenIds: [],
          text: "",
          finishReason: tokens.length < echoed.length ? "length" : "stop",
          usage: { promptTokens: echoed.length, completionTokens: tokens.length },
        };
      } finally {
        if (request.priority === "batch") this.#batchRunning--;
        this.#release();
      }
    } catch (error) {
      call.outcome ??= "failed";
      throw error;
    } finally {
      call.endedAt = Date.now();
    }
  }

  /** False when `signal` aborted before a slot was free. */
  #acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.#used < this.#slots) {
      this.#used++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const grant = (): void => {
        signal.removeEventListener("abort", onAbort);
        this.#used++;
        resolve(true);
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(grant);
        if (i !== -1) this.#waiting.splice(i, 1);
        resolve(false);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  #release(): void {
    this.#used--;
    this.#waiting.shift()?.();
  }
}
