/**
 * The attention node's engine loop (vLLM's EngineCoreProc without the sockets): one EngineCore
 * shared by every router stream, stepped while any sequence is unfinished. Each step's outputs
 * are grouped by the stream that owns them, so a stream gets one report per step. Commands
 * (add, abort) land between steps. If a step itself throws, the engine is dead: every stream
 * fails with UNAVAILABLE and no new sequence is taken.
 */
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { AddRequestParams, EngineCore, EngineCoreOutput, StepStats } from "@expertmesh/engine";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { ServeSession } from "./serve-session.ts";
import type { SessionHost } from "./serve-session.ts";
import type { SessionListener } from "./session-output.ts";

export interface ServeLoopOptions {
  /** After every step that ran the model or produced outputs (stats null: it only applied aborts). */
  onStep?: (stats: StepStats | null, outputs: readonly EngineCoreOutput[]) => void;
  /** Once, when a step throws and the engine is declared dead. */
  onDead?: (error: ExpertMeshError) => void;
}

/** The scheduler's load, as GetLoad reports it. */
export interface EngineLoad {
  readonly running: number;
  readonly waiting: number;
  readonly freeKvBlocks: number;
  readonly totalKvBlocks: number;
  readonly kvBlockSize: number;
  readonly maxRunning: number;
}

export class ServeLoop implements SessionHost {
  readonly core: EngineCore;
  readonly #options: ServeLoopOptions;
  readonly #sessions = new Set<ServeSession>();
  /** Engine request id → the session that owns it. */
  readonly #owners = new Map<string, ServeSession>();
  readonly #idleWaiters = new Set<() => void>();
  #nextSession = 0;
  #looping = false;
  #loop: Promise<void> = Promise.resolve();
  #dead: ExpertMeshError | undefined;
  #draining = false;

  constructor(core: EngineCore, options: ServeLoopOptions = {}) {
    this.core = core;
    this.#options = options;
  }

  get isDead(): boolean {
    return this.#dead !== undefined;
  }

  /** Open router streams. */
  get numSessions(): number {
    return this.#sessions.size;
  }

  /** A new router stream; UNAVAILABLE once the engine is dead. */
  openSession(listener: SessionListener): ServeSession {
    if (this.#dead !== undefined) throw this.#dead;
    const session = new ServeSession(this.#nextSession++, this, listener);
    this.#sessions.add(session);
    return session;
  }

  load(): EngineLoad {
    const { scheduler, pool } = this.core;
    return {
      running: scheduler.numRunning,
      waiting: scheduler.numWaiting,
      freeKvBlocks: pool.freeBlocks,
      totalKvBlocks: pool.numBlocks,
      kvBlockSize: pool.blockSize,
      maxRunning: scheduler.options.maxNumSeqs,
    };
  }

  /** From now on new sequences are refused (UNAVAILABLE); running ones go on. */
  startDrain(): void {
    this.#draining = true;
  }

  /** Resolves once no sequence is left in the engine, or when `signal` aborts. */
  async drained(signal?: AbortSignal): Promise<void> {
    if (!this.core.hasUnfinishedRequests() || signal?.aborted === true) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.#idleWaiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.#idleWaiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Fails every open stream with `error`, aborts what is left and waits for the loop to stop. */
  async close(error: ExpertMeshError): Promise<void> {
    this.#draining = true;
    for (const session of [...this.#sessions]) session.fail(error);
    this.#kick();
    await this.#loop;
  }

  // SessionHost

  submit(session: ServeSession, params: AddRequestParams): void {
    this.core.addRequest(params);
    this.#owners.set(params.requestId, session);
    this.#kick();
  }

  abort(requestId: string): void {
    if (this.core.abort(requestId)) this.#kick();
  }

  discard(requestId: string): void {
    this.#owners.delete(requestId);
    this.abort(requestId);
  }

  refusal(): ExpertMeshError | undefined {
    if (this.#dead !== undefined) return this.#dead;
    if (this.#draining)
      return new ExpertMeshError(
        Code.UNAVAILABLE,
        "attention node is draining; send the sequence to another node",
      );
    return undefined;
  }

  detach(session: ServeSession): void {
    this.#sessions.delete(session);
  }

  #kick(): void {
    if (this.#looping || this.#dead !== undefined) return;
    this.#looping = true;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    try {
      while (this.core.hasUnfinishedRequests()) {
        const { outputs, stats } = await this.core.step();
        const bySession = new Map<ServeSession, EngineCoreOutput[]>();
        for (const output of outputs) {
          const session = this.#owners.get(output.requestId);
          if (session === undefined) continue;
          if (output.finishReason !== null) this.#owners.delete(output.requestId);
          const list = bySession.get(session);
          if (list === undefined) bySession.set(session, [output]);
          else list.push(output);
        }
        for (const [session, list] of bySession) session.deliver(list);
        if (stats !== null || outputs.length > 0) this.#options.onStep?.(stats, outputs);
        // Let commands (adds, aborts, cancellations) land at this step boundary.
        await yieldToEventLoop();
      }
    } catch (err) {
      const dead = new ExpertMeshError(
        Code.UNAVAILABLE,
        "attention engine failed; it serves no more sequences",
        { cause: err },
      );
      this.#dead = dead;
      this.#owners.clear();
      for (const session of [...this.#sessions]) session.fail(dead);
      this.#options.onDead?.(dead);
    } finally {
      this.#looping = false;
      for (const done of [...this.#idleWaiters]) done();
    }
  }
}
