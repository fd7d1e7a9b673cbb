/**
 * A real tiny cluster for the router's end-to-end tests: one expert-worker (every expert of the
 * default placement, from a placement file), one attention node, and the router, each its own
 * `node --import tsx …/main.ts` process, ready once it prints its listening line. `stop()` tears
 * the process groups down front to back and asserts nothing is left behind.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createDefaultPlacement, placementToJSON } from "@expertmesh/placement";
import { AttentionService } from "@expertmesh/proto";
import { createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient } from "@expertmesh/shared";
import { getFreePort, liveGroupMembers, spawnService } from "@expertmesh/shared/testing";
import type { ServiceProcess } from "@expertmesh/shared/testing";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (services/router/tests → ../../..). */
export const REPO_ROOT = resolve(here, "../../..");
/** tiny-v3: no tokenizer (token-id prompts only), goldens in golden.json. */
export const TINY_V3 = resolve(REPO_ROOT, "../shared/fixtures/tiny-v3");

export interface ClusterOptions {
  readonly modelDir: string;
  /** Extra settings of the attention node (EXPERTMESH_MAX_RUNNING, …). */
  readonly attentionEnv?: Readonly<Record<string, string>>;
  /** Extra settings of the router. */
  readonly routerEnv?: Readonly<Record<string, string>>;
}

export interface RouterCluster {
  /** "127.0.0.1:<port>" of the router's gRPC server. */
  readonly grpcAddress: string;
  /** "http://127.0.0.1:<port>" of the router's HTTP API. */
  readonly httpUrl: string;
  /** "127.0.0.1:<port>" of the attention node. */
  readonly attentionAddress: string;
  /** AttentionService client of the attention node (GetLoad). */
  readonly attention: GrpcClient<typeof AttentionService>;
  readonly router: ServiceProcess;
  /**
   * Signals the attention node and waits for it to exit: SIGKILL (no drain, its streams just
   * break) or SIGTERM (it drains: no new sequences, running ones finish).
   */
  killAttention(signal?: "SIGKILL" | "SIGTERM"): Promise<void>;
  /** Starts the attention node again on the same port. */
  restartAttention(): Promise<void>;
  stop(): Promise<void>;
}

const SHAPE = { moeLayers: [1, 2, 3], nRoutedExperts: 256, nGroup: 8, topkGroup: 4 } as const;
const STARTUP_MS = 60_000;

export async function startRouterCluster(options: ClusterOptions): Promise<RouterCluster> {
  const dir = await mkdtemp(join(tmpdir(), "router-test-"));
  const placementFile = join(dir, "placement.json");
  const placement = createDefaultPlacement({
    ...SHAPE,
    workers: [{ workerId: "w0", node: "n0" }],
    version: 1,
  });
  await writeFile(placementFile, JSON.stringify(placementToJSON(placement)));
  const processes: ServiceProcess[] = [];
  let channel: GrpcChannel | undefined;
  const stop = async (): Promise<void> => {
    channel?.close();
    // Front to back: the router first, so its streams end before the node goes.
    for (const p of [...processes].reverse()) await p.stop({ timeoutMs: 10_000 });
    await rm(dir, { recursive: true, force: true });
    for (const p of processes)
      assert.deepEqual(liveGroupMembers(p.pid), [], `${p.name} left processes behind`);
  };
  const start = async (name: string, service: string, env: Record<string, string>, ready: RegExp) => {
    const proc = spawnService("node", ["--import", "tsx", `services/${service}/src/main.ts`], {
      cwd: REPO_ROOT,
      name,
      env: { EXPERTMESH_HOST: "127.0.0.1", EXPERTMESH_PORT: "0", EXPERTMESH_LOG_LEVEL: "warn", ...env },
    });
    processes.push(proc);
    try {
      return await proc.waitForLine(ready, STARTUP_MS);
    } catch (err) {
      throw new Error(`${name} did not start: ${(err as Error).message}\n${proc.output()}`, { cause: err });
    }
  };
  try {
    const worker = await start(
      "expert-worker w0",
      "expert-worker",
      {
        EXPERTMESH_MODEL_DIR: options.modelDir,
        EXPERTMESH_WORKER_ID: "w0",
        EXPERTMESH_NODE: "n0",
        EXPERTMESH_PLACEMENT_FILE: placementFile,
        EXPERTMESH_METRICS_PORT: String(await getFreePort()),
        EXPERTMESH_THREADS: "1",
      },
      /^expert-worker w0 listening on \S+:(\d+)$/,
    );
    // A fixed port, so a restarted node comes back where the router looks for it.
    const attentionPort = await getFreePort();
    const attentionAddress = `127.0.0.1:${attentionPort}`;
    const attentionEnv = {
      EXPERTMESH_MODEL_DIR: options.modelDir,
      EXPERTMESH_ATTENTION_ID: "a0",
      EXPERTMESH_PORT: String(attentionPort),
      EXPERTMESH_PLACEMENT_FILE: placementFile,
      EXPERTMESH_WORKER_ADDRESSES: `w0=127.0.0.1:${worker[1]}`,
      EXPERTMESH_METRICS_PORT: String(await getFreePort()),
      EXPERTMESH_THREADS: "1",
      EXPERTMESH_KV_CACHE_MB: "4",
      ...options.attentionEnv,
    };
    const attentionReady = /^attention a0 listening on \S+:(\d+)$/;
    await start("attention a0", "attention", attentionEnv, attentionReady);
    let attentionProcess = processes[processes.length - 1] as ServiceProcess;
    const router = await start(
      "router",
      "router",
      {
        EXPERTMESH_MODEL_DIR: options.modelDir,
        EXPERTMESH_HTTP_PORT: "0",
        EXPERTMESH_ATTENTION_ADDRESSES: `a0=${attentionAddress}`,
        EXPERTMESH_LOAD_POLL_INTERVAL: "200ms",
        ...options.routerEnv,
      },
      /^router listening grpc=(\S+) http=(\S+)$/,
    );
    channel = createGrpcChannel(attentionAddress);
    return {
      grpcAddress: router[1] as string,
      httpUrl: router[2] as string,
      attentionAddress,
      attention: createGrpcClient(AttentionService, channel),
      router: processes[processes.length - 1] as ServiceProcess,
      async killAttention(signal = "SIGKILL") {
        attentionProcess.kill(signal);
        await attentionProcess.exited;
        await attentionProcess.stop();
      },
      async restartAttention() {
        const routerProcess = processes.pop() as ServiceProcess;
        try {
          await start("attention a0 (restarted)", "attention", attentionEnv, attentionReady);
        } finally {
          attentionProcess = processes[processes.length - 1] as ServiceProcess;
          // Keep the router last, so stop() still goes front to back.
          processes.push(routerProcess);
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
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
