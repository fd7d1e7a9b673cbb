import type { ChannelOptions } from "@grpc/grpc-js";
import { invalidArgument } from "../errors.ts";

/** 256 MiB: a prefill micro-batch of FLOAT32 rows is far above grpc's 4 MiB default. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/** Keepalive pings notice a dead peer on a long-lived stream (a worker's pod vanishing). */
export const DEFAULT_KEEPALIVE_TIME_MS = 20_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;

/** Transport settings shared by servers and channels. */
export interface TransportOptions {
  /** Largest message sent or received, in bytes (default DEFAULT_MAX_MESSAGE_BYTES). */
  maxMessageBytes?: number;
  /** Interval of keepalive pings on an open connection (default 20 s). */
  keepaliveTimeMs?: number;
  /** How long a ping may go unanswered before the connection is dropped (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Raw grpc-js options, applied last (they win over the settings above). */
  channelOptions?: ChannelOptions;
}

/** The grpc-js options for a server or a channel, validated. */
export function toChannelOptions(options: TransportOptions): ChannelOptions {
  const maxMessageBytes = positiveInt(
    options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    "maxMessageBytes",
  );
  return {
    "grpc.max_send_message_length": maxMessageBytes,
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.keepalive_time_ms": positiveInt(
      options.keepaliveTimeMs ?? DEFAULT_KEEPALIVE_TIME_MS,
      "keepaliveTimeMs",
    ),
    "grpc.keepalive_timeout_ms": positiveInt(
      options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
      "keepaliveTimeoutMs",
    ),
    ...options.channelOptions,
  };
}

function positiveInt(value: number, field: string): number {
  // grpc-js keeps these in 32-bit signed ints.
  if (!Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw invalidArgument(field, `must be an integer in [1, ${2 ** 31 - 1}], got ${value}`);
  }
  return value;
}
