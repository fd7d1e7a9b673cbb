import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { CallOptions } from "@expertmesh/shared";
import type { ResolvedCall } from "./client-options.ts";
import { nextRetryDelay, waitBeforeRetry } from "./retry-policy.ts";
import type { RetryPolicy } from "./retry-policy.ts";

/** One attempt of a call, given the transport options and its 1-based number. */
export type Attempt<T> = (options: CallOptions, attempt: number) => T;

/** A unary call, retried per `policy` within the call's one deadline. */
export async function unaryWithRetry<T>(
  policy: RetryPolicy,
  call: ResolvedCall,
  attempt: Attempt<Promise<T>>,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(attemptOptions(call), n);
    } catch (error) {
      const failure = ExpertMeshError.from(error);
      const delay = nextRetryDelay(policy, n, failure, call.deadline);
      if (delay === undefined) throw failure;
      await waitBeforeRetry(delay, call.signal);
    }
  }
}

/**
 * A server stream, retried per `policy` only until its first message: after that the call has
 * had effects the client saw (tokens were generated), so a failure is the caller's to handle.
 * Breaking out of the loop cancels the call in flight.
 */
export async function* streamWithRetry<T>(
  policy: RetryPolicy,
  call: ResolvedCall,
  attempt: Attempt<AsyncIterable<T>>,
): AsyncGenerator<T, void, undefined> {
  for (let n = 1; ; n++) {
    let received = false;
    try {
      for await (const message of attempt(attemptOptions(call), n)) {
        // Chunks buffered before an abort are not handed out after it.
        if (call.signal?.aborted === true) throw new ExpertMeshError(Code.CANCELLED, "call cancelled");
        received = true;
        yield message;
      }
      return;
    } catch (error) {
      const failure = ExpertMeshError.from(error);
      const delay = received ? undefined : nextRetryDelay(policy, n, failure, call.deadline);
      if (delay === undefined) throw failure;
      await waitBeforeRetry(delay, call.signal);
    }
  }
}

function attemptOptions(call: ResolvedCall): CallOptions {
  if (call.signal?.aborted === true) throw new ExpertMeshError(Code.CANCELLED, "call cancelled");
  const options: CallOptions = { metadata: call.metadata };
  if (call.deadline !== undefined) options.deadline = call.deadline;
  if (call.signal !== undefined) options.signal = call.signal;
  return options;
}
