import { setTimeout as sleep } from "node:timers/promises";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";

/**
 * When the client tries a call again. As Temporal's SDK does: only an explicit set of codes is
 * retried (UNAVAILABLE: nobody could take the call; RESOURCE_EXHAUSTED: admission refused it, so
 * the first wait is longer), with exponential backoff and jitter. INTERNAL, INVALID_ARGUMENT,
 * DEADLINE_EXCEEDED, CANCELLED, ... are never retried.
 */
export interface RetryOptions {
  /** Attempts in all, the first included (default 4; 1 disables retries). */
  maxAttempts?: number;
  /** Wait before the second attempt after UNAVAILABLE (default 100 ms). */
  initialBackoffMs?: number;
  /** Longest wait between two attempts (default 5 s). */
  maxBackoffMs?: number;
  /** Wait before the second attempt after RESOURCE_EXHAUSTED (default 1 s): an overloaded
   * cluster needs time, not a quick second knock. */
  resourceExhaustedBackoffMs?: number;
  /** Growth of the wait per attempt (default 2). */
  multiplier?: number;
  /** Each wait is scaled by a random factor in [1 − jitter, 1 + jitter] (default 0.2), so clients
   * refused together do not come back together. */
  jitter?: number;
}

/** RetryOptions with every default applied and validated. */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly resourceExhaustedBackoffMs: number;
  readonly multiplier: number;
  readonly jitter: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 4,
  initialBackoffMs: 100,
  maxBackoffMs: 5_000,
  resourceExhaustedBackoffMs: 1_000,
  multiplier: 2,
  jitter: 0.2,
});

/** The codes the client retries. */
export const RETRYABLE_CODES: ReadonlySet<Code> = new Set([Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED]);

/** Validates retry options into a policy; `false` means one attempt only. */
export function compileRetryPolicy(options: RetryOptions | false | undefined): RetryPolicy {
  if (options === false) return { ...DEFAULT_RETRY_POLICY, maxAttempts: 1 };
  for (const key of Object.keys(options ?? {})) {
    if (!(key in DEFAULT_RETRY_POLICY)) throw invalidArgument(`retry.${key}`, "unknown retry option");
  }
  const policy = { ...DEFAULT_RETRY_POLICY, ...definedOnly(options ?? {}) };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1 || policy.maxAttempts > 100) {
    throw invalidArgument("retry.maxAttempts", `must be an integer in [1, 100], got ${policy.maxAttempts}`);
  }
  for (const field of ["initialBackoffMs", "maxBackoffMs", "resourceExhaustedBackoffMs"] as const) {
    const value = policy[field];
    if (!Number.isFinite(value) || value < 0) {
      throw invalidArgument(`retry.${field}`, `must be a non-negative number of milliseconds, got ${value}`);
    }
  }
  if (policy.maxBackoffMs < policy.initialBackoffMs) {
    throw invalidArgument(
      "retry.maxBackoffMs",
      `must be at least initialBackoffMs (${policy.initialBackoffMs}), got ${policy.maxBackoffMs}`,
    );
  }
  if (!Number.isFinite(policy.multiplier) || policy.multiplier < 1) {
    throw invalidArgument("retry.multiplier", `must be >= 1, got ${policy.multiplier}`);
  }
  if (!Number.isFinite(policy.jitter) || policy.jitter < 0 || policy.jitter > 1) {
    throw invalidArgument("retry.jitter", `must be in [0, 1], got ${policy.jitter}`);
  }
  return Object.freeze(policy);
}

/**
 * The wait after failed attempt number `attempt` (1-based) with `code`:
 * base × multiplier^(attempt−1), capped, then jittered. The base is resourceExhaustedBackoffMs
 * for RESOURCE_EXHAUSTED, initialBackoffMs otherwise; the cap never cuts below the base.
 */
export function backoffMs(
  policy: RetryPolicy,
  attempt: number,
  code: Code,
  random: () => number = Math.random,
): number {
  const base =
    code === Code.RESOURCE_EXHAUSTED
      ? Math.max(policy.resourceExhaustedBackoffMs, policy.initialBackoffMs)
      : policy.initialBackoffMs;
  const cap = Math.max(policy.maxBackoffMs, base);
  const delay = Math.min(cap, base * policy.multiplier ** (attempt - 1));
  return delay * (1 - policy.jitter + 2 * policy.jitter * random());
}

/**
 * Whether a failed attempt is tried again, and after how long: undefined means give up (the
 * code is not retryable, attempts are used up, or the wait would run past the deadline; the
 * caller then throws the attempt's own error, the most useful thing to report).
 */
export function nextRetryDelay(
  policy: RetryPolicy,
  attempt: number,
  error: ExpertMeshError,
  deadline: number | undefined,
): number | undefined {
  if (!RETRYABLE_CODES.has(error.code) || attempt >= policy.maxAttempts) return undefined;
  const delay = backoffMs(policy, attempt, error.code);
  if (deadline !== undefined && Date.now() + delay >= deadline) return undefined;
  return delay;
}

/** Waits `ms`; aborting `signal` ends the wait with CANCELLED. */
export async function waitBeforeRetry(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, signal === undefined ? undefined : { signal });
  } catch (error) {
    throw new ExpertMeshError(Code.CANCELLED, "call cancelled", { cause: error });
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
