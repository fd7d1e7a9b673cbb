import type { Metadata } from "@grpc/grpc-js";
import { Code, ExpertMeshError } from "../errors.ts";

/** What a handler knows about its call besides the request. */
export interface CallContext {
  /**
   * Aborted when the client cancels, the deadline passes or the server shuts down; `reason` is
   * an ExpertMeshError (CANCELLED or DEADLINE_EXCEEDED). Pass it on to whatever the handler waits for.
   */
  readonly signal: AbortSignal;
  /** The call's deadline in epoch milliseconds; undefined when the client set none. */
  readonly deadline: number | undefined;
  /** Request metadata (text entries only; `-bin` entries are left out), keys lower-case. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The client's address as grpc-js reports it. */
  readonly peer: string;
  /** gRPC path of the call: `/expertmesh.v1.ExpertService/Dispatch`. */
  readonly method: string;
}

/** What every kind of grpc-js server call has and this file uses (grpc-js does not export it). */
interface ServerSurfaceCall {
  readonly cancelled: boolean;
  readonly metadata: Metadata;
  getPeer(): string;
  getDeadline(): Date | number;
  on(event: "cancelled", listener: () => void): unknown;
  off(event: "cancelled", listener: () => void): unknown;
}

/** How early a cancellation may arrive and still count as the deadline passing. */
const DEADLINE_SLACK_MS = 100;

/** setTimeout's limit; longer deadlines are left to grpc-js's own cancellation. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Builds the CallContext of a server call; `close` releases its timer and listener. */
export function openCallContext(
  call: ServerSurfaceCall,
  method: string,
): { context: CallContext; close: () => void } {
  const controller = new AbortController();
  const rawDeadline = call.getDeadline();
  const deadlineMs = rawDeadline instanceof Date ? rawDeadline.getTime() : rawDeadline;
  const deadline = Number.isFinite(deadlineMs) ? deadlineMs : undefined;

  const abort = (code: Code, message: string): void => {
    if (!controller.signal.aborted) controller.abort(new ExpertMeshError(code, message));
  };
  const expire = (): void => abort(Code.DEADLINE_EXCEEDED, "deadline exceeded");
  // A client whose deadline expires cancels the stream (RST_STREAM CANCEL, the same as a
  // deliberate cancel), usually just before this side's copy of the deadline passes: tell the
  // two apart by the clock, with slack for the transit time.
  const onCancelled = (): void => {
    if (deadline !== undefined && Date.now() >= deadline - DEADLINE_SLACK_MS) expire();
    else abort(Code.CANCELLED, "call cancelled");
  };

  let timer: NodeJS.Timeout | undefined;
  if (deadline !== undefined && deadline - Date.now() <= MAX_TIMER_MS) {
    timer = setTimeout(expire, Math.max(0, deadline - Date.now()));
    timer.unref();
  }
  call.on("cancelled", onCancelled);
  if (call.cancelled) onCancelled();

  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(call.metadata.getMap())) {
    if (typeof value === "string") metadata[key] = value;
  }

  return {
    context: { signal: controller.signal, deadline, metadata, peer: call.getPeer(), method },
    close: () => {
      clearTimeout(timer);
      call.off("cancelled", onCancelled);
    },
  };
}
