/**
 * The Lua scripts of the batch jobs: every state change of a job is one script, so concurrent
 * routers (a cancel on one, the worker on another) never see or make a half-applied change.
 * Each script opens with its contract (KEYS, ARGV, returns); negative returns become errors in
 * `scriptError`, the one place that maps them.
 *
 * Job status strings: queued → running → completed | failed; cancel: queued → cancelled,
 * running → cancelling → cancelled (once the worker has aborted what was in flight).
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { BATCH_FIELDS as F } from "./batch-keys.ts";

export type StoredStatus = "queued" | "running" | "completed" | "failed" | "cancelling" | "cancelled";

export const TERMINAL_STATUSES: ReadonlySet<StoredStatus> = new Set(["completed", "failed", "cancelled"]);

/** A Lua script run by SHA (EVALSHA), loaded with EVAL the first time a server lacks it. */
export class BatchScript {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(
    redis: Redis,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
  ): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/** Script return codes below zero. */
export const SCRIPT_ERRORS = {
  noSuchJob: -1,
  alreadyExists: -2,
  badUpload: -3,
} as const;

/** The one mapping of a script's negative return code to the error a caller sees. */
export function scriptError(code: number, batchId: string): ExpertMeshError {
  switch (code) {
    case SCRIPT_ERRORS.noSuchJob:
      return new ExpertMeshError(Code.NOT_FOUND, `batch job ${batchId} not found (unknown or expired)`, {
        details: { batch_id: batchId },
      });
    case SCRIPT_ERRORS.alreadyExists:
      return new ExpertMeshError(Code.ALREADY_EXISTS, `batch job ${batchId} already exists`, {
        details: { batch_id: batchId },
      });
    case SCRIPT_ERRORS.badUpload:
      return new ExpertMeshError(
        Code.ABORTED,
        `the items of batch job ${batchId} were not all stored; submit again`,
        {
          details: { batch_id: batchId },
        },
      );
    default:
      return new ExpertMeshError(Code.INTERNAL, `batch script returned unknown code ${code}`);
  }
}

export const CREATE_JOB = new BatchScript(`
--[[
  Creates a job from its uploaded items, atomically: the items appear under the job only with it.
  KEYS[1] batch:<id>                  hash: the job (must not exist)
  KEYS[2] batch:<id>:items            list: the job's items
  KEYS[3] batch:<id>:staging:<token>  list: the items as uploaded
  KEYS[4] batch:<id>:results          hash: cleared (left over from an expired job of this id)
  ARGV[1] total (the staging list's length)
  ARGV[2] created_ms
  ARGV[3] max_attempts
  ARGV[4] labels (JSON object)
  Returns  1  created with status "queued"; the staging list became the items list
          -2  a job with this id exists (the staging list is deleted)
          -3  the staging list does not hold ARGV[1] items (it is deleted)
]]
if redis.call("EXISTS", KEYS[1]) == 1 then
  redis.call("DEL", KEYS[3])
  return -2
end
if redis.call("LLEN", KEYS[3]) ~= tonumber(ARGV[1]) then
  redis.call("DEL", KEYS[3])
  return -3
end
redis.call("RENAME", KEYS[3], KEYS[2])
redis.call("PERSIST", KEYS[2])
redis.call("DEL", KEYS[4])
redis.call("HSET", KEYS[1],
  "${F.status}", "queued", "${F.total}", ARGV[1], "${F.completed}", 0, "${F.failed}", 0,
  "${F.promptTokens}", 0, "${F.completionTokens}", 0, "${F.createdMs}", ARGV[2],
  "${F.maxAttempts}", ARGV[3], "${F.labels}", ARGV[4])
return 1
`);

export const START_JOB = new BatchScript(`
--[[
  A worker takes the job: queued → running (started_ms set); running stays running (a job
  redelivered after a worker died resumes); cancelling → cancelled (nobody was running it).
  KEYS[1] batch:<id>  hash: the job
  ARGV[1] now_ms
  ARGV[2] events channel
  ARGV[3] events message ("status:<id>")
  Returns the status after the call ("running" means: run it; anything else: leave it)
          -1  no such job
]]
local status = redis.call("HGET", KEYS[1], "${F.status}")
if not status then
  return -1
end
if status == "queued" then
  redis.call("HSET", KEYS[1], "${F.status}", "running", "${F.startedMs}", ARGV[1])
  redis.call("PUBLISH", ARGV[2], ARGV[3])
  return "running"
end
if status == "cancelling" then
  redis.call("HSET", KEYS[1], "${F.status}", "cancelled", "${F.finishedMs}", ARGV[1])
  redis.call("PUBLISH", ARGV[2], ARGV[3])
  return "cancelled"
end
return status
`);

export const RECORD_RESULT = new BatchScript(`
--[[
  Stores one item's result once and counts it: a resumed job that runs an item again does not
  count it twice.
  KEYS[1] batch:<id>          hash: the job
  KEYS[2] batch:<id>:results  hash: index → result
  ARGV[1] item index
  ARGV[2] result (BatchItemResult, protobuf binary)
  ARGV[3] counter to raise: "${F.completed}" or "${F.failed}"
  ARGV[4] prompt tokens, ARGV[5] completion tokens (added to the job's usage)
  ARGV[6] events channel
  ARGV[7] events message ("progress:<id>")
  Returns  1  stored and counted
           0  a result for this index was already stored (nothing changed)
          -1  no such job
]]
if redis.call("EXISTS", KEYS[1]) == 0 then
  return -1
end
if redis.call("HSETNX", KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call("HINCRBY", KEYS[1], ARGV[3], 1)
redis.call("HINCRBY", KEYS[1], "${F.promptTokens}", ARGV[4])
redis.call("HINCRBY", KEYS[1], "${F.completionTokens}", ARGV[5])
redis.call("PUBLISH", ARGV[6], ARGV[7])
return 1
`);

export const FINISH_JOB = new BatchScript(`
--[[
  Ends a job: cancelling → cancelled; with an error → failed; otherwise → completed. A job that
  already ended keeps its status. The job's keys then expire after the retention time.
  KEYS[1] batch:<id>          hash: the job
  KEYS[2] batch:<id>:items    list
  KEYS[3] batch:<id>:results  hash
  ARGV[1] now_ms
  ARGV[2] retention_ms
  ARGV[3] events channel
  ARGV[4] events message ("status:<id>")
  ARGV[5] error code (0: none)
  ARGV[6] error message
  Returns the final status
          -1  no such job
]]
local status = redis.call("HGET", KEYS[1], "${F.status}")
if not status then
  return -1
end
if status == "completed" or status == "failed" or status == "cancelled" then
  return status
end
local final = "completed"
if status == "cancelling" then
  final = "cancelled"
elseif tonumber(ARGV[5]) ~= 0 then
  final = "failed"
  redis.call("HSET", KEYS[1], "${F.errorCode}", ARGV[5], "${F.errorMessage}", ARGV[6])
end
redis.call("HSET", KEYS[1], "${F.status}", final, "${F.finishedMs}", ARGV[1])
for i = 1, 3 do
  redis.call("PEXPIRE", KEYS[i], ARGV[2])
end
redis.call("PUBLISH", ARGV[3], ARGV[4])
return final
`);

export const CANCEL_JOB = new BatchScript(`
--[[
  Cancels a job: queued → cancelled at once (its keys then expire after the retention time);
  running → cancelling (the worker running it aborts what is in flight, then finishes it as
  cancelled); any other status is left as it is.
  KEYS[1] batch:<id>          hash: the job
  KEYS[2] batch:<id>:items    list
  KEYS[3] batch:<id>:results  hash
  ARGV[1] now_ms
  ARGV[2] retention_ms
  ARGV[3] events channel
  ARGV[4] events message ("cancel:<id>")
  Returns the status after the call
          -1  no such job
]]
local status = redis.call("HGET", KEYS[1], "${F.status}")
if not status then
  return -1
end
if status == "queued" then
  redis.call("HSET", KEYS[1], "${F.status}", "cancelled", "${F.finishedMs}", ARGV[1])
  for i = 1, 3 do
    redis.call("PEXPIRE", KEYS[i], ARGV[2])
  end
  redis.call("PUBLISH", ARGV[3], ARGV[4])
  return "cancelled"
end
if status == "running" then
  redis.call("HSET", KEYS[1], "${F.status}", "cancelling")
  redis.call("PUBLISH", ARGV[3], ARGV[4])
  return "cancelling"
end
return status
`);
