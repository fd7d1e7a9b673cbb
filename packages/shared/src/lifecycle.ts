/**
 * Service lifecycle: starting → ready → draining → stopped, and the process wrapper that drives
 * it (`runService`): start the service, mark it ready, and on SIGTERM/SIGINT mark it not ready,
 * drain in-flight work within a deadline, stop, exit 0. A second signal forces the exit; an
 * uncaught error is logged and exits 1. The process and `exit` are injectable so the same code
 * runs in tests without signals or exits.
 */
import type { EventEmitter } from "node:events";
import { constants } from "node:os";
import { Code, ExpertMeshError } from "./errors.ts";
import type { Logger } from "./logging.ts";
import type { HealthProbe } from "./metrics/metrics-server.ts";

export type ServiceState = "starting" | "ready" | "draining" | "stopped";

const ORDER: Readonly<Record<ServiceState, number>> = { starting: 0, ready: 1, draining: 2, stopped: 3 };

export type LifecycleListener = (state: ServiceState, previous: ServiceState) => void;

/** The state readiness/liveness probes (HTTP /readyz, gRPC health) report. Moves forward only. */
export class Lifecycle implements HealthProbe {
  #state: ServiceState = "starting";
  readonly #listeners = new Set<LifecycleListener>();

  get state(): ServiceState {
    return this.#state;
  }

  isLive(): boolean {
    return this.#state !== "stopped";
  }

  isReady(): boolean {
    return this.#state === "ready";
  }

  /** Calls `listener` on every change; returns the function that unsubscribes it. */
  onChange(listener: LifecycleListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Moves to a later state (a no-op for the current one). */
  transition(to: ServiceState): void {
    const from = this.#state;
    if (to === from) return;
    if (ORDER[to] < ORDER[from]) {
      throw new ExpertMeshError(Code.FAILED_PRECONDITION, `lifecycle cannot go from ${from} back to ${to}`);
    }
    this.#state = to;
    for (const listener of this.#listeners) listener(to, from);
  }
}

/** What `start` hands back: how to finish in-flight work, then how to release everything. */
export interface ServiceHandle {
  /** Stop taking new work and finish what is in flight; `signal` aborts when the drain deadline passes. */
  drain(signal: AbortSignal): Promise<void>;
  /** Close servers, connections and child processes. */
  stop(): Promise<void>;
}

/** The parts of `process` runService uses: signal and error events. */
export type ProcessLike = Pick<EventEmitter, "on" | "removeListener">;

export interface RunServiceOptions {
  name: string;
  logger: Logger;
  /** Starts the service; it is marked ready when this resolves. */
  start(lifecycle: Lifecycle): Promise<ServiceHandle>;
  /** How long drain may take before stop runs anyway; 30 s by default. */
  drainTimeoutMs?: number;
  /** How long stop may take before the process exits 1; 10 s by default. */
  stopTimeoutMs?: number;
  /** Source of SIGTERM/SIGINT and uncaught-error events; `process` by default. */
  process?: ProcessLike;
  /** `process.exit` by default. */
  exit?: (code: number) => void;
}

export interface ServiceRun {
  readonly lifecycle: Lifecycle;
  /** The exit code, once `exit` has been called. */
  readonly exited: Promise<number>;
  /** Begins a graceful shutdown, as SIGTERM would. */
  shutdown(reason?: string): void;
}

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

export function runService(options: RunServiceOptions): ServiceRun {
  const { logger, name } = options;
  const proc: ProcessLike = options.process ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
  const lifecycle = new Lifecycle();

  let exitCode: number | undefined;
  let shuttingDown = false;
  let resolveExited: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (resolveExited = resolve));

  const finish = (code: number): void => {
    if (exitCode !== undefined) return;
    exitCode = code;
    for (const [event, listener] of listeners) proc.removeListener(event, listener);
    resolveExited(code);
    exit(code);
  };

  const onSignal = (signal: (typeof SIGNALS)[number]): void => {
    if (shuttingDown) {
      logger.warn({ signal }, "second signal: forcing exit");
      finish(128 + constants.signals[signal]);
      return;
    }
    void drainAndStop(signal);
  };
  const onFatal = (what: string) => (err: unknown) => {
    logger.fatal({ err }, `${what}: exiting`);
    finish(1);
  };
  const listeners: [string, (arg: unknown) => void][] = [
    ...SIGNALS.map((s): [string, () => void] => [s, () => onSignal(s)]),
    ["uncaughtException", onFatal("uncaught exception")],
    ["unhandledRejection", onFatal("unhandled rejection")],
  ];
  for (const [event, listener] of listeners) proc.on(event, listener);

  logger.info({ name, drainTimeoutMs, stopTimeoutMs }, "starting");
  const started = (async (): Promise<ServiceHandle | undefined> => {
    try {
      const handle = await options.start(lifecycle);
      if (!shuttingDown) {
        lifecycle.transition("ready");
        logger.info("ready");
      }
      return handle;
    } catch (err) {
      logger.fatal({ err }, "failed to start");
      finish(1);
      return undefined;
    }
  })();

  /** Never rejects: every failure ends in an exit code. */
  const drainAndStop = async (reason: string): Promise<void> => {
    shuttingDown = true;
    lifecycle.transition("draining");
    logger.info({ reason, drainTimeoutMs }, "draining");
    const handle = await started;
    if (handle === undefined || exitCode !== undefined) return;

    let code = 0;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error(`drain exceeded ${drainTimeoutMs} ms`)),
      drainTimeoutMs,
    );
    try {
      const outcome = await Promise.race([
        handle.drain(deadline.signal).then(() => "drained"),
        aborted(deadline.signal),
      ]);
      if (outcome === "aborted") logger.warn({ drainTimeoutMs }, "drain timed out; stopping anyway");
      else logger.info("drained");
    } catch (err) {
      logger.error({ err }, "drain failed");
      code = 1;
    } finally {
      clearTimeout(timer);
    }
    if (exitCode !== undefined) return;

    let stopTimer: NodeJS.Timeout | undefined;
    try {
      const outcome = await Promise.race([
        handle.stop().then(() => "stopped"),
        new Promise<string>((resolve) => (stopTimer = setTimeout(resolve, stopTimeoutMs, "timeout"))),
      ]);
      if (outcome === "timeout") {
        logger.error({ stopTimeoutMs }, "stop timed out");
        code = 1;
      }
    } catch (err) {
      logger.error({ err }, "stop failed");
      code = 1;
    } finally {
      clearTimeout(stopTimer);
    }
    lifecycle.transition("stopped");
    logger.info({ code }, "stopped");
    finish(code);
  };

  return {
    lifecycle,
    exited,
    shutdown(reason = "shutdown requested") {
      if (!shuttingDown) void drainAndStop(reason);
    },
  };
}

function aborted(signal: AbortSignal): Promise<"aborted"> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve("aborted"), { once: true }));
}
