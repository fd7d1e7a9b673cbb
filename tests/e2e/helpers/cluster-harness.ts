/**
 * What the whole-cluster tests share: fixture paths, real service processes (expert-workers
 * started from a placement file, the `expertmesh` CLI), compare_golden.py, metrics scraping and
 * the no-orphans check. Every process is a process-group leader (spawnService) and is stopped as
 * a group; nothing waits on a sleep.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createDefaultPlacement, placementToJSON } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { getFreePort, liveGroupMembers, spawnService } from "@expertmesh/shared/testing";
import type { ServiceProcess } from "@expertmesh/shared/testing";

const run = promisify(execFile);

/** The repository root (tests/e2e/helpers → ../../..). */
export const REPO_ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");
export const FIXTURES = resolve(REPO_ROOT, "../shared/fixtures");
export const TINY_V3 = join(FIXTURES, "tiny-v3");
export const TINY_V3_FP8 = join(FIXTURES, "tiny-v3-fp8");
export const COMPARE_GOLDEN = resolve(REPO_ROOT, "../shared/tools/compare_golden.py");
/** The CLI's installed entry point: registers tsx itself, so it runs from any directory. */
export const CLI = join(REPO_ROOT, "packages/cli/bin/expertmesh.js");

/** The facts of a fixture's config.json the cluster tests need. */
export interface FixtureShape {
  readonly hiddenSize: number;
  /** MoE layer indices (first_k_dense_replace .. num_hidden_layers - 1). */
  readonly moeLayers: readonly number[];
  readonly nRoutedExperts: number;
  readonly nGroup: number;
  readonly topkGroup: number;
  /** Experts per token. */
  readonly topK: number;
}

export function fixtureShape(fixture: string): FixtureShape {
  const c = JSON.parse(readFileSync(join(fixture, "config.json"), "utf8")) as Record<string, number>;
  const first = c.first_k_dense_replace ?? 0;
  const layers = c.num_hidden_layers ?? 0;
  return {
    hiddenSize: c.hidden_size ?? 0,
    moeLayers: Array.from({ length: layers - first }, (_, i) => first + i),
    nRoutedExperts: c.n_routed_experts ?? 0,
    nGroup: c.n_group ?? 0,
    topkGroup: c.topk_group ?? 0,
    topK: c.num_experts_per_tok ?? 0,
  };
}

export interface FixturePrompt {
  readonly name: string;
  readonly tokens: readonly number[];
  readonly max_new_tokens: number;
}

export function readPrompts(fixture: string): FixturePrompt[] {
  return (JSON.parse(readFileSync(join(fixture, "prompts.json"), "utf8")) as { prompts: FixturePrompt[] })
    .prompts;
}

/** golden.json's greedy tokens per prompt name. */
export function goldenGreedy(fixture: string): Map<string, number[]> {
  const golden = JSON.parse(readFileSync(join(fixture, "golden.json"), "utf8")) as {
    prompts: { name: string; greedy: { generated: number[] } }[];
  };
  return new Map(golden.prompts.map((p) => [p.name, p.greedy.generated]));
}

/** The default placement of workers w0..wN-1 dealt round-robin over nodes n0..nM-1 (as `expertmesh up` does). */
export function defaultPlacement(shape: FixtureShape, workers: number, nodes: number): Placement {
  const list = Array.from({ length: workers }, (_, i) => ({ workerId: `w${i}`, node: `n${i % nodes}` }));
  const { moeLayers, nRoutedExperts, nGroup, topkGroup } = shape;
  return createDefaultPlacement({ moeLayers, nRoutedExperts, nGroup, topkGroup, workers: list });
}

export interface WorkerProcesses {
  readonly placement: Placement;
  readonly placementFile: string;
  /** workerId → "127.0.0.1:<port>" */
  readonly addresses: ReadonlyMap<string, string>;
  readonly processes: readonly ServiceProcess[];
  /** Stops every worker group and asserts none left a process behind. */
  stop(): Promise<void>;
}

const WORKER_READY = /^expert-worker (\S+) listening on \S+:(\d+)$/;

/** One expert-worker process per placement worker (placement from a file); resolves once all listen. */
export async function startWorkers(modelDir: string, placement: Placement): Promise<WorkerProcesses> {
  const dir = await mkdtemp(join(tmpdir(), "expertmesh-e2e-workers-"));
  const placementFile = join(dir, "placement.json");
  await writeFile(placementFile, JSON.stringify(placementToJSON(placement)));
  const processes: ServiceProcess[] = [];
  const addresses = new Map<string, string>();
  const stop = async (): Promise<void> => {
    await Promise.all(processes.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
    for (const p of processes)
      assert.deepEqual(liveGroupMembers(p.pid), [], `${p.name} left processes behind`);
  };
  try {
    for (const w of placement.workers) {
      processes.push(
        spawnService(process.execPath, ["--import", "tsx", "services/expert-worker/src/main.ts"], {
          cwd: REPO_ROOT,
          name: w.workerId,
          env: {
            EXPERTMESH_MODEL_DIR: modelDir,
            EXPERTMESH_WORKER_ID: w.workerId,
            EXPERTMESH_NODE: w.node,
            EXPERTMESH_PLACEMENT_FILE: placementFile,
            EXPERTMESH_HOST: "127.0.0.1",
            EXPERTMESH_PORT: "0",
            EXPERTMESH_METRICS_PORT: String(await getFreePort()),
            EXPERTMESH_THREADS: "1",
            EXPERTMESH_LOG_LEVEL: "warn",
          },
        }),
      );
    }
    const ready = await Promise.all(processes.map((p) => p.waitForLine(WORKER_READY, 90_000)));
    for (const m of ready) addresses.set(m[1] as string, `127.0.0.1:${m[2]}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { placement, placementFile, addresses, processes, stop };
}

/** `expertmesh <args>` as a process (cwd: the repository root unless given). */
export function expertmesh(
  args: readonly string[],
  options: { cwd?: string; name?: string } = {},
): ServiceProcess {
  return spawnService(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    name: options.name ?? `expertmesh ${args[0]}`,
  });
}

/** Runs compare_golden.py --require-all; its summary counts and full output. */
export async function compareGolden(
  golden: string,
  candidate: string,
): Promise<{ passed: number; failed: number; output: string }> {
  let stdout = "";
  let stderr = "";
  try {
    ({ stdout, stderr } = await run(
      "python3",
      [COMPARE_GOLDEN, "--require-all", "--golden", golden, "--candidate", candidate],
      {
        timeout: 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
    ));
  } catch (err) {
    // Exit status 1 on any failed check: the counts are still printed.
    const e = err as { stdout?: string; stderr?: string };
    stdout = e.stdout ?? "";
    stderr = e.stderr ?? String(err);
  }
  const output = `${stdout}${stderr}`;
  const m = /(\d+) passed, (\d+) failed/.exec(output);
  assert.ok(m !== null, `compare_golden printed no summary:\n${output}`);
  return { passed: Number(m[1]), failed: Number(m[2]), output };
}

/** Prometheus text → `name{labels}` → value. */
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

/** The value of the sample of `name` whose labels include every `key="value"` of `labels`. */
export function sample(
  samples: ReadonlyMap<string, number>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let total = 0;
  let found = false;
  for (const [key, value] of samples) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) continue;
    total += value;
    found = true;
  }
  assert.ok(found, `no sample ${name}${JSON.stringify(labels)}`);
  return total;
}
