/**
 * Two-micro-batch ping-pong on a real cluster: tiny-v3 whose routed experts live in 2 real
 * expert-worker processes (float32 wire). Steps split into two concurrent forwards must give
 * exactly the greedy tokens of one forward per step, and the two forwards must really overlap.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import { EngineCore } from "@expertmesh/engine";
import type { EngineModel } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import type { DeepSeekModel, ForwardBatch, LatentKvStore } from "@expertmesh/model";
import { placementToJSON } from "@expertmesh/placement";
import { WireDtype } from "@expertmesh/proto";
import {
  defaultClusterPlacement,
  readModelConfig,
  startExpertWorkers,
  stopMembers,
} from "../src/cluster/local-cluster.ts";
import type { ClusterMember } from "../src/cluster/local-cluster.ts";
import { REPO_ROOT } from "../src/cluster/repo-paths.ts";

const TINY_V3 = join(REPO_ROOT, "../shared/fixtures/tiny-v3");

let dir = "";
let workers: ClusterMember[] = [];
let remote: RemoteRoutedExperts | undefined;
let model: DeepSeekModel | undefined;

before(async () => {
  const config = await readModelConfig(TINY_V3);
  const placement = defaultClusterPlacement(config, 2, 2);
  dir = await mkdtemp(join(tmpdir(), "ping-pong-test-"));
  const placementFile = join(dir, "placement.json");
  await writeFile(placementFile, JSON.stringify(placementToJSON(placement)));
  workers = await startExpertWorkers({
    modelDir: TINY_V3,
    host: "127.0.0.1",
    threads: 1,
    logLevel: "warn",
    output: () => ({ kind: "lines", write: () => {} }),
    readyTimeoutMs: 60_000,
    stopTimeoutMs: 10_000,
    placement,
    source: { placementFile },
  });
  remote = new RemoteRoutedExperts({
    placement,
    addresses: new Map(workers.map((w) => [w.name, w.address])),
    hiddenSize: config.hiddenSize,
    rowDtype: WireDtype.FLOAT32,
    combineDtype: WireDtype.FLOAT32,
  });
  model = await loadModel(TINY_V3, { threads: 1, experts: "none", routedExperts: remote });
});

after(async () => {
  await remote?.close(1_000);
  await model?.release();
  await stopMembers([workers], 10_000);
  if (dir !== "") await rm(dir, { recursive: true, force: true });
});

/** The model, recording when each forward started and finished (call order). */
function recording(inner: DeepSeekModel): EngineModel & { spans: { start: number; end: number }[] } {
  const spans: { start: number; end: number }[] = [];
  let clock = 0;
  return {
    config: inner.config,
    spans,
    async forward(batch: ForwardBatch, kv: LatentKvStore) {
      const span = { start: clock++, end: -1 };
      spans.push(span);
      try {
        return await inner.forward(batch, kv);
      } finally {
        span.end = clock++;
      }
    },
  };
}

async function generate(
  m: EngineModel,
  microBatches: 1 | 2,
  prompts: number[][],
  steps: number,
): Promise<number[][]> {
  const core = new EngineCore(m, { kvCacheBytes: 16 * 2 ** 20, microBatches });
  const out = prompts.map((): number[] => []);
  prompts.forEach((p, i) =>
    core.addRequest({
      requestId: String(i),
      promptTokenIds: p,
      sampling: { temperature: 0, maxTokens: steps, ignoreEos: true },
    }),
  );
  while (core.hasUnfinishedRequests()) {
    const { outputs } = await core.step();
    for (const o of outputs) {
      assert.notEqual(o.finishReason, "error", o.error?.message);
      out[Number(o.requestId)]!.push(...o.newTokenIds);
    }
  }
  return out;
}

test("two concurrent micro-batches give the greedy tokens of one, and overlap", async () => {
  const m = model!;
  const prompts = [
    [5, 17, 92, 3, 44, 120, 7],
    [9, 9, 250, 31],
    [100, 2, 77, 66, 18, 240, 11, 6, 300],
    [42, 8],
    [13, 200, 55],
  ].map((p) => p.map((t) => t % m.config.vocabSize));
  const one = recording(m);
  const single = await generate(one, 1, prompts, 6);
  const two = recording(m);
  const split = await generate(two, 2, prompts, 6);
  assert.deepEqual(split, single);
  assert.ok(single.every((t) => t.length === 6));
  // one micro-batch: forwards never overlap
  for (let i = 1; i < one.spans.length; i++) assert.ok(one.spans[i]!.start > one.spans[i - 1]!.end);
  // two: each step's second forward started before its first finished
  const overlapping = two.spans.filter((s, i) => i > 0 && s.start < two.spans[i - 1]!.end);
  assert.equal(two.spans.length, 2 * one.spans.length);
  assert.equal(overlapping.length, one.spans.length);
});
