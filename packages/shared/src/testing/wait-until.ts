import { setTimeout as sleep } from "node:timers/promises";
import { Code, ExpertMeshError } from "../errors.ts";

export interface WaitUntilOptions {
  /** 5 s by default. */
  timeoutMs?: number;
  /** Time between polls; 25 ms by default. */
  intervalMs?: number;
  /** Says what was awaited, for the timeout error. */
  what?: string;
}

/**
 * Polls `predicate` until it returns a truthy value (which is returned) — for real readiness
 * checks, never fixed sleeps. Errors thrown by the predicate count as "not yet"; the last one
 * is named in the timeout error.
 */
export async function waitUntil<T>(
  predicate: () => T | Promise<T>,
  options: WaitUntilOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new ExpertMeshError(
        Code.DEADLINE_EXCEEDED,
        `timed out after ${timeoutMs} ms waiting for ${options.what ?? "condition"}${why}`,
        { cause: lastError },
      );
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}
