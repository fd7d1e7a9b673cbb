/**
 * Every Redis key, channel and queue name of the batch jobs, built here and nowhere else.
 *
 *   <prefix>:{<cluster>}:batch:<id>                  hash     the job (fields: BATCH_FIELDS)
 *   <prefix>:{<cluster>}:batch:<id>:items            list     [total] GenerateRequest, protobuf binary
 *   <prefix>:{<cluster>}:batch:<id>:results          hash     item index → BatchItemResult, protobuf binary
 *   <prefix>:{<cluster>}:batch:<id>:staging:<token>  list     items being uploaded by a submit (TTL)
 *   <prefix>:{<cluster>}:batch:events                channel  "<event>:<id>" on every change of a job
 *   <prefix>:{<cluster>}:bull:batch-jobs:*           BullMQ's keys of the queue (one job per batch job, id = batch id)
 *
 * The cluster name is a Redis Cluster hash tag, so a job's keys (and BullMQ's) share one slot and
 * a script may touch several of them.
 */
import { invalidArgument } from "@expertmesh/shared";

export interface BatchKeyOptions {
  /** "expertmesh" by default. */
  readonly prefix?: string;
  /** Name of the serving cluster (one model deployment); "default" by default. */
  readonly cluster?: string;
}

/** Hash fields of a job. Counts and times are decimal integers; labels is a JSON object. */
export const BATCH_FIELDS = {
  status: "status",
  total: "total",
  completed: "completed",
  failed: "failed",
  promptTokens: "prompt_tokens",
  completionTokens: "completion_tokens",
  createdMs: "created_ms",
  startedMs: "started_ms",
  finishedMs: "finished_ms",
  maxAttempts: "max_attempts",
  labels: "labels",
  errorCode: "error_code",
  errorMessage: "error_message",
} as const;

/** What a message on the events channel says happened to a job. */
export type BatchEvent = "progress" | "status" | "cancel";

const NAME = /^[A-Za-z0-9_.-]+$/;
/** Client-chosen batch ids: safe in keys and URLs, never all digits (BullMQ reserves those). */
export const BATCH_ID = /^(?![0-9]+$)[A-Za-z0-9_-]{1,64}$/;

export class BatchKeys {
  /** BullMQ queue name. */
  readonly queueName = "batch-jobs";
  /** BullMQ key prefix (its keys are `<bullPrefix>:<queueName>:…`). */
  readonly bullPrefix: string;
  /** Pub/sub channel of job changes. */
  readonly events: string;
  readonly #base: string;

  constructor(options: BatchKeyOptions = {}) {
    const prefix = options.prefix ?? "expertmesh";
    const cluster = options.cluster ?? "default";
    if (!NAME.test(prefix))
      throw invalidArgument("prefix", `must match ${String(NAME)}, got ${JSON.stringify(prefix)}`);
    if (!NAME.test(cluster))
      throw invalidArgument("cluster", `must match ${String(NAME)}, got ${JSON.stringify(cluster)}`);
    this.#base = `${prefix}:{${cluster}}`;
    this.bullPrefix = `${this.#base}:bull`;
    this.events = `${this.#base}:batch:events`;
  }

  /** The job's hash. */
  job(batchId: string): string {
    return `${this.#base}:batch:${checkBatchId(batchId)}`;
  }

  items(batchId: string): string {
    return `${this.job(batchId)}:items`;
  }

  results(batchId: string): string {
    return `${this.job(batchId)}:results`;
  }

  staging(batchId: string, token: string): string {
    return `${this.job(batchId)}:staging:${token}`;
  }

  /** An events channel message. */
  eventMessage(event: BatchEvent, batchId: string): string {
    return `${event}:${batchId}`;
  }

  /** Reads an events channel message; undefined for one this version does not know. */
  parseEventMessage(message: string): { event: BatchEvent; batchId: string } | undefined {
    const at = message.indexOf(":");
    const event = message.slice(0, at);
    if (event !== "progress" && event !== "status" && event !== "cancel") return undefined;
    return { event, batchId: message.slice(at + 1) };
  }
}

/** INVALID_ARGUMENT unless `batchId` is a well-formed batch id. */
export function checkBatchId(batchId: string, field = "batch_id"): string {
  if (!BATCH_ID.test(batchId)) {
    throw invalidArgument(
      field,
      `must be 1..64 characters of [A-Za-z0-9_-], not all digits; got ${JSON.stringify(batchId)}`,
    );
  }
  return batchId;
}
