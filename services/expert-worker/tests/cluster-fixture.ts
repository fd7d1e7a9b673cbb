/**
 * Real expert-worker processes for the tests: a placement written to a temp file (or published
 * to Redis by the test), one `node --import tsx src/main.ts` per worker, ready once it prints
 * its `listening on` line; stopped as a process group, asserting nothing is left behind.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createDefaultPlacement, placementToJSON } from "@expertmesh/placement";
import type { Placement, PlacementWorker } from "@expertmesh/placement";
import { getFreePort, liveGroupMembers, spawnService } from "@expertmesh/shared/testing";
import type { ServiceProcess } from "@expertmesh/shared/testing";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (services/expert-worker/tests → ../../..). */
export const REPO_ROOT = resolve(here, "../../..");
/** tiny-v3: hidden 64, layers 1..3 MoE, 256 experts in 8 groups, top-8 of 4 groups. */
export const TINY_V3 = resolve(REPO_ROOT, "../shared/fixtures/tiny-v3");
export const TINY_V3_SHAPE = { moeLayers: [1, 2, 3], nRoutedExperts: 256, nGroup: 8, topkGroup: 4 } as const;
export const TINY_V3_HIDDEN = 64;

/** Workers `w0, w1, …` spread round-robin over `nodes` nodes `n0, n1, …`. */
export function workersOn(count: number, nodes: number): PlacementWorker[] {
  return Array.from({ length: count }, (_, i) => ({ workerId: `w${i}`, node: `n${i % nodes}` }));
}

export function tinyPlacement(workers: readonly PlacementWorker[], version = 1): Placement {
  return createDefaultPlacement({ ...TINY_V3_SHAPE, workers, version });
}

export interface RunningWorker {
  readonly workerId: string;
  /** "127.0.0.1:<port>" */
  readonly address: string;
  /** http://127.0.0.1:<port>/metrics */
  readonly metricsUrl: string;
  readonly process: ServiceProcess;
}

export interface WorkerCluster {
  readonly workers: readonly RunningWorker[];
  /** workerId → address, for RemoteRoutedExperts. */
  readonly addresses: ReadonlyMap<string, string>;
  worker(workerId: string): RunningWorker;
  /** Stops every worker (SIGTERM, then SIGKILL) and asserts their process groups are empty. */
  stop(): Promise<void>;
}

const READY = /^expert-worker (\S+) listening on \S+:(\d+)$/;

/** Starts one worker process; resolves once it is listening. */
export async function startWorker(
  workerId: string,
  env: Readonly<Record<string, string>>,
): Promise<RunningWorker> {
  // The metrics port is not printed, so the test picks it (the gRPC port is read from the ready line).
  const metricsPort = await getFreePort();
  const proc = spawnService("node", ["--import", "tsx", "services/expert-worker/src/main.ts"], {
    cwd: REPO_ROOT,
    name: `expert-worker ${workerId}`,
    env: {
      EXPERTMESH_MODEL_DIR: TINY_V3,
      EXPERTMESH_WORKER_ID: workerId,
      EXPERTMESH_HOST: "127.0.0.1",
      EXPERTMESH_PORT: "0",
      EXPERTMESH_METRICS_PORT: String(metricsPort),
      EXPERTMESH_THREADS: "1",
      EXPERTMESH_LOG_LEVEL: "warn",
      ...env,
    },
  });
  try {
    const m = await proc.waitForLine(READY, 45_000);
    assert.equal(m[1], workerId);
    return {
      workerId,
      address: `127.0.0.1:${m[2]}`,
      metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
      process: proc,
    };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Starts every worker of `placement` from a placement file (env added to each). */
export async function startCluster(
  placement: Placement,
  env: Readonly<Record<string, string>> = {},
): Promise<WorkerCluster> {
  const dir = await mkdtemp(join(tmpdir(), "expert-worker-test-"));
  const file = join(dir, "placement.json");
  await writeFile(file, JSON.stringify(placementToJSON(placement)));
  const started = await Promise.allSettled(
    placement.workers.map((w) =>
      startWorker(w.workerId, { EXPERTMESH_PLACEMENT_FILE: file, EXPERTMESH_NODE: w.node, ...env }),
    ),
  );
  const workers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(workers.map((w) => w.process.stop()));
    await rm(dir, { recursive: true, force: true });
    for (const w of workers)
      assert.deepEqual(liveGroupMembers(w.process.pid), [], `${w.workerId} left processes behind`);
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed !== undefined) {
    await stop();
    throw failed.reason;
  }
  return {
    workers,
    addresses: new Map(workers.map((w) => [w.workerId, w.address])),
    worker: (id) => {
      const w = workers.find((x) => x.workerId === id);
      assert.ok(w !== undefined, `no worker ${id}`);
      return w;
    },
    stop,
  };
}

/** mulberry32: a small seeded PRNG so random inputs are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random rows [T, H] and routing that obeys the model's group limit: per token `topkGroup`
 * distinct groups, `k` distinct experts among them, positive weights summing to 2.5.
 */
export function randomBatch(
  T: number,
  random: () => number,
  shape: { nRoutedExperts: number; nGroup: number; topkGroup: number } = TINY_V3_SHAPE,
  k = 8,
  H = TINY_V3_HIDDEN,
): { rows: Float32Array; experts: Int32Array; weights: Float32Array } {
  const rows = Float32Array.from({ length: T * H }, () => random() * 2 - 1);
  const experts = new Int32Array(T * k);
  const weights = new Float32Array(T * k);
  const groupSize = shape.nRoutedExperts / shape.nGroup;
  for (let t = 0; t < T; t++) {
    const groups = pick(shape.nGroup, shape.topkGroup, random);
    const candidates = groups.flatMap((g) => Array.from({ length: groupSize }, (_, i) => g * groupSize + i));
    const chosen = pick(candidates.length, k, random).map((i) => candidates[i] as number);
    const raw = chosen.map(() => 0.1 + random());
    const total = raw.reduce((a, b) => a + b, 0);
    chosen.forEach((e, j) => {
      experts[t * k + j] = e;
      weights[t * k + j] = (raw[j]! / total) * 2.5;
    });
  }
  return { rows, experts, weights };
}

/** `count` distinct integers from 0..n−1. */
function pick(n: number, count: number, random: () => number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (n - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count);
}

/** Prometheus text → `name{labels}` → value (labels as printed, in their order). */
export async function scrapeMetrics(url: string): Promise<Map<string, number>> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Sum of the samples of metric `name` whose labels include every `key="value"` of `labels`. */
export function sumSamples(
  samples: ReadonlyMap<string, number>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let total = 0;
  for (const [key, value] of samples) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) total += value;
  }
  return total;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
