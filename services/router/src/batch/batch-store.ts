/**
 * Batch jobs in Redis: the job hash (status, counts, usage, times), its items (GenerateRequest,
 * protobuf binary) and its results (BatchItemResult, protobuf binary). Every change of state
 * goes through one script of batch-scripts.ts; reads are plain commands.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { BatchItemResultSchema, BatchStatus, GenerateRequestSchema } from "@expertmesh/proto";
import type { BatchItemResult, BatchJobSchema, GenerateRequest } from "@expertmesh/proto";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { Redis } from "ioredis";
import { BATCH_FIELDS as F } from "./batch-keys.ts";
import type { BatchKeys } from "./batch-keys.ts";
import {
  CANCEL_JOB,
  CREATE_JOB,
  FINISH_JOB,
  RECORD_RESULT,
  START_JOB,
  scriptError,
} from "./batch-scripts.ts";
import type { StoredStatus } from "./batch-scripts.ts";

export type BatchJobInit = MessageInitShape<typeof BatchJobSchema>;
export type BatchItemResultInit = MessageInitShape<typeof BatchItemResultSchema>;

/** A job as stored. */
export interface StoredJob {
  readonly batchId: string;
  readonly status: StoredStatus;
  readonly total: number;
  readonly completed: number;
  readonly failed: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly createdMs: number;
  readonly startedMs: number;
  readonly finishedMs: number;
  readonly maxAttempts: number;
  readonly labels: Record<string, string>;
  readonly error: { code: Code; message: string } | undefined;
}

export interface BatchStoreOptions {
  /** How long a finished job (and its results) stays readable. */
  readonly retentionMs: number;
}

/** Items pushed per RPUSH while uploading a job. */
const UPLOAD_CHUNK = 1_000;
/** An upload that never became a job (its router died midway) disappears after this. */
const STAGING_TTL_MS = 10 * 60_000;

const STATUS_TO_WIRE: Readonly<Record<StoredStatus, BatchStatus>> = {
  queued: BatchStatus.QUEUED,
  running: BatchStatus.RUNNING,
  completed: BatchStatus.COMPLETED,
  failed: BatchStatus.FAILED,
  cancelling: BatchStatus.CANCELLING,
  cancelled: BatchStatus.CANCELLED,
};

export class BatchStore {
  readonly keys: BatchKeys;
  readonly #redis: Redis;
  readonly #retentionMs: number;

  constructor(redis: Redis, keys: BatchKeys, options: BatchStoreOptions) {
    this.#redis = redis;
    this.keys = keys;
    this.#retentionMs = options.retentionMs;
  }

  /**
   * Stores a new job (status queued) with its items. The items are uploaded to a staging list
   * first and become the job's in the same script that creates it, so a reader never sees a job
   * with part of its items. ALREADY_EXISTS when the id is taken.
   */
  async create(
    batchId: string,
    items: readonly GenerateRequest[],
    job: { createdMs: number; maxAttempts: number; labels: Readonly<Record<string, string>> },
  ): Promise<void> {
    const staging = this.keys.staging(batchId, randomUUID());
    for (let start = 0; start < items.length; start += UPLOAD_CHUNK) {
      const chunk = items
        .slice(start, start + UPLOAD_CHUNK)
        .map((item) => Buffer.from(toBinary(GenerateRequestSchema, item)));
      await this.#redis
        .multi()
        .rpush(staging, ...chunk)
        .pexpire(staging, STAGING_TTL_MS)
        .exec();
    }
    const code = (await CREATE_JOB.run(
      this.#redis,
      [this.keys.job(batchId), this.keys.items(batchId), staging, this.keys.results(batchId)],
      [items.length, job.createdMs, job.maxAttempts, JSON.stringify(job.labels)],
    )) as number;
    if (code < 0) throw scriptError(code, batchId);
  }

  /** The job; NOT_FOUND when unknown or expired. */
  async get(batchId: string): Promise<StoredJob> {
    const fields = await this.#redis.hgetall(this.keys.job(batchId));
    if (fields[F.status] === undefined) throw scriptError(-1, batchId);
    return parseJob(batchId, fields);
  }

  /** A worker takes the job; "running" means run it, anything else means leave it. */
  async start(batchId: string): Promise<StoredStatus> {
    const reply = await START_JOB.run(
      this.#redis,
      [this.keys.job(batchId)],
      [Date.now(), this.keys.events, this.keys.eventMessage("status", batchId)],
    );
    return statusReply(reply, batchId);
  }

  /** Stores one item's result and counts it; false when the item already had one. */
  async record(
    batchId: string,
    result: BatchItemResultInit,
    outcome: "completed" | "failed",
  ): Promise<boolean> {
    const message = create(BatchItemResultSchema, result);
    const reply = (await RECORD_RESULT.run(
      this.#redis,
      [this.keys.job(batchId), this.keys.results(batchId)],
      [
        message.index,
        Buffer.from(toBinary(BatchItemResultSchema, message)),
        outcome === "completed" ? F.completed : F.failed,
        outcome === "completed" ? (message.usage?.promptTokens ?? 0) : 0,
        outcome === "completed" ? (message.usage?.completionTokens ?? 0) : 0,
        this.keys.events,
        this.keys.eventMessage("progress", batchId),
      ],
    )) as number;
    if (reply < 0) throw scriptError(reply, batchId);
    return reply === 1;
  }

  /** Ends the job (completed, or failed with `error`, or cancelled after a cancel); its keys then expire. */
  async finish(batchId: string, error?: ExpertMeshError): Promise<StoredStatus> {
    const reply = await FINISH_JOB.run(
      this.#redis,
      [this.keys.job(batchId), this.keys.items(batchId), this.keys.results(batchId)],
      [
        Date.now(),
        this.#retentionMs,
        this.keys.events,
        this.keys.eventMessage("status", batchId),
        error?.code ?? 0,
        error?.message ?? "",
      ],
    );
    return statusReply(reply, batchId);
  }

  /** Cancels the job: queued → cancelled, running → cancelling; the status after the call. */
  async cancel(batchId: string): Promise<StoredStatus> {
    const reply = await CANCEL_JOB.run(
      this.#redis,
      [this.keys.job(batchId), this.keys.items(batchId), this.keys.results(batchId)],
      [Date.now(), this.#retentionMs, this.keys.events, this.keys.eventMessage("cancel", batchId)],
    );
    return statusReply(reply, batchId);
  }

  /** Items [start, start + count) of the job, in order. */
  async items(batchId: string, start: number, count: number): Promise<GenerateRequest[]> {
    const raw = await this.#redis.lrangeBuffer(this.keys.items(batchId), start, start + count - 1);
    return raw.map((bytes) => fromBinary(GenerateRequestSchema, bytes));
  }

  /** Indices of the items that have a result. */
  async finishedIndices(batchId: string): Promise<Set<number>> {
    return new Set((await this.#redis.hkeys(this.keys.results(batchId))).map(Number));
  }

  /** Results of items [offset, offset + limit) that have one, by index. */
  async results(batchId: string, offset: number, limit: number): Promise<BatchItemResult[]> {
    if (limit <= 0) return [];
    const indices = Array.from({ length: limit }, (_, i) => String(offset + i));
    const raw = await this.#redis.hmgetBuffer(this.keys.results(batchId), ...indices);
    const out: BatchItemResult[] = [];
    for (const bytes of raw) if (bytes !== null) out.push(fromBinary(BatchItemResultSchema, bytes));
    return out;
  }
}

/** A stored job as the wire's BatchJob. */
export function toBatchJobProto(job: StoredJob): BatchJobInit {
  return {
    batchId: job.batchId,
    status: STATUS_TO_WIRE[job.status],
    total: job.total,
    completed: job.completed,
    failed: job.failed,
    usage: { promptTokens: job.promptTokens, completionTokens: job.completionTokens },
    createdUnixMs: BigInt(job.createdMs),
    startedUnixMs: BigInt(job.startedMs),
    finishedUnixMs: BigInt(job.finishedMs),
    ...(job.error === undefined ? {} : { error: { code: job.error.code, message: job.error.message } }),
    labels: job.labels,
    maxAttempts: job.maxAttempts,
  };
}

function parseJob(batchId: string, fields: Record<string, string>): StoredJob {
  const int = (name: string): number => Number(fields[name] ?? "0");
  let labels: Record<string, string> = {};
  try {
    labels = JSON.parse(fields[F.labels] ?? "{}") as Record<string, string>;
  } catch (err) {
    throw new ExpertMeshError(Code.DATA_LOSS, `batch job ${batchId} has unreadable labels`, { cause: err });
  }
  const errorCode = int(F.errorCode);
  return {
    batchId,
    status: parseStatus(fields[F.status] ?? "", batchId),
    total: int(F.total),
    completed: int(F.completed),
    failed: int(F.failed),
    promptTokens: int(F.promptTokens),
    completionTokens: int(F.completionTokens),
    createdMs: int(F.createdMs),
    startedMs: int(F.startedMs),
    finishedMs: int(F.finishedMs),
    maxAttempts: int(F.maxAttempts),
    labels,
    error: errorCode === 0 ? undefined : { code: errorCode as Code, message: fields[F.errorMessage] ?? "" },
  };
}

function parseStatus(value: string, batchId: string): StoredStatus {
  if (value in STATUS_TO_WIRE) return value as StoredStatus;
  throw new ExpertMeshError(
    Code.DATA_LOSS,
    `batch job ${batchId} has unknown status ${JSON.stringify(value)}`,
  );
}

function statusReply(reply: unknown, batchId: string): StoredStatus {
  if (typeof reply === "number") throw scriptError(reply, batchId);
  return parseStatus(String(reply), batchId);
}
