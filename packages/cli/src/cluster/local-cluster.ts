/**
 * A whole ExpertMesh cluster on this machine, as real processes: Redis, the default placement
 * published to it (workers w0..wN-1 spread over nodes n0..nM-1), N expert-workers and D
 * attention nodes (static topology: each attention node is told every worker's address). Each
 * member is started with its EXPERTMESH_* settings and counted as up once its gRPC health check
 * says SERVING. Stopping goes front to back: attention nodes drain first, then workers (they
 * flush their load windows), then Redis.
 */
import { join } from "node:path";
import { openCheckpoint } from "@expertmesh/model";
import type { ModelConfig } from "@expertmesh/model";
import { PlacementStore, createDefaultPlacement } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { Redis } from "ioredis";
import { freePort } from "./free-port.ts";
import { waitUntilServing } from "./grpc-health.ts";
import { startRedis } from "./redis-process.ts";
import { REPO_ROOT, serviceArgs } from "./repo-paths.ts";
import { ServiceProcess } from "./service-process.ts";
import type { ProcessExit, ProcessOutput } from "./service-process.ts";

export type MemberRole = "redis" | "expert-worker" | "attention" | "router";
export type WireDtypeName = "bf16" | "float32" | "fp8";
export type CombineDtypeName = "bf16" | "float32";

export interface ClusterMember {
  readonly name: string;
  readonly role: MemberRole;
  /** "host:port" of its gRPC server (Redis: of its RESP port). */
  readonly address: string;
  /** Port of /metrics, /healthz, /readyz (not for Redis). */
  readonly metricsPort: number | undefined;
  /** Routing node (expert-workers). */
  readonly node: string | undefined;
  readonly process: ServiceProcess;
}

/** Settings every service process of a launch shares. */
export interface ServiceSettings {
  readonly modelDir: string;
  /** Address services bind and are reached on; 127.0.0.1 locally. */
  readonly host: string;
  /** onnxruntime intra-op threads per process. */
  readonly threads: number;
  readonly logLevel: string;
  /** Where each member's output goes. */
  readonly output: (name: string) => ProcessOutput;
  /** How long a member may take to report SERVING. */
  readonly readyTimeoutMs: number;
  /** How long a member may take to drain and exit before SIGKILL. */
  readonly stopTimeoutMs: number;
}

/** The MoE shape a placement needs, from the model config. */
export function placementShapeOf(config: ModelConfig): {
  moeLayers: number[];
  nRoutedExperts: number;
  nGroup: number;
  topkGroup: number;
} {
  const moeLayers = Array.from(
    { length: config.numLayers - config.firstKDenseReplace },
    (_, i) => config.firstKDenseReplace + i,
  );
  return {
    moeLayers,
    nRoutedExperts: config.nRoutedExperts,
    nGroup: config.nGroup,
    topkGroup: config.topkGroup,
  };
}

/** The default placement of `workers` workers w0.. dealt round-robin over `nodes` nodes n0... */
export function defaultClusterPlacement(
  config: ModelConfig,
  workers: number,
  nodes: number,
  version = 1,
): Placement {
  if (!Number.isInteger(workers) || workers < 1)
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `--workers must be a positive integer, got ${workers}`);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > workers) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `--nodes must be an integer in [1, --workers ${workers}], got ${nodes}`,
    );
  }
  const list = Array.from({ length: workers }, (_, i) => ({ workerId: `w${i}`, node: `n${i % nodes}` }));
  return createDefaultPlacement({ ...placementShapeOf(config), workers: list, version });
}

/** The config of the checkpoint at `dir` (headers are validated, no weight is read). */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const checkpoint = await openCheckpoint(dir);
  try {
    return checkpoint.config;
  } finally {
    await checkpoint.close();
  }
}

/** Stops members in groups, each group in parallel, groups in order; resolves with how each exited. */
export async function stopMembers(
  groups: readonly (readonly ClusterMember[])[],
  timeoutMs: number,
): Promise<{ member: ClusterMember; exit: ProcessExit }[]> {
  const exits: { member: ClusterMember; exit: ProcessExit }[] = [];
  for (const group of groups) {
    const done = await Promise.all(
      group.map(async (member) => ({ member, exit: await member.process.stop(timeoutMs) })),
    );
    exits.push(...done);
  }
  return exits;
}

/** Starts every member in parallel and waits until each is SERVING; on any failure stops them all. */
async function startAll(
  specs: readonly {
    name: string;
    role: MemberRole;
    node?: string;
    env: Record<string, string>;
    port: number;
    metricsPort: number;
  }[],
  settings: ServiceSettings,
): Promise<ClusterMember[]> {
  const members = specs.map((s): ClusterMember => ({
    name: s.name,
    role: s.role,
    address: `${settings.host}:${s.port}`,
    metricsPort: s.metricsPort,
    node: s.node,
    process: new ServiceProcess({
      name: s.name,
      command: process.execPath,
      args: serviceArgs(s.role === "attention" || s.role === "router" ? s.role : "expert-worker"),
      cwd: REPO_ROOT,
      env: s.env,
      output: settings.output(s.name),
    }),
  }));
  const ready = await Promise.allSettled(
    members.map((m) => waitUntilServing(m.process, m.address, settings.readyTimeoutMs)),
  );
  const failed = ready.find((r) => r.status === "rejected");
  if (failed !== undefined) {
    await stopMembers([members], settings.stopTimeoutMs);
    throw ExpertMeshError.from(failed.reason);
  }
  return members;
}

function commonEnv(settings: ServiceSettings, port: number, metricsPort: number): Record<string, string> {
  return {
    EXPERTMESH_MODEL_DIR: settings.modelDir,
    EXPERTMESH_HOST: settings.host,
    EXPERTMESH_PORT: String(port),
    EXPERTMESH_METRICS_PORT: String(metricsPort),
    EXPERTMESH_THREADS: String(settings.threads),
    EXPERTMESH_LOG_LEVEL: settings.logLevel,
    // Drain well within the launcher's stop timeout, so a stop never has to SIGKILL.
    EXPERTMESH_DRAIN_TIMEOUT: `${Math.max(1, Math.floor((settings.stopTimeoutMs * 2) / 3 / 1000))}s`,
  };
}

export interface WorkersLaunch extends ServiceSettings {
  readonly placement: Placement;
  /** Where workers read the placement: Redis's current version, or a placement file. */
  readonly source:
    { readonly redisUrl: string; readonly loadWindow?: string } | { readonly placementFile: string };
}

/** One expert-worker per placement worker, on its node; resolves once all are SERVING. */
export async function startExpertWorkers(launch: WorkersLaunch): Promise<ClusterMember[]> {
  const specs = [];
  for (const w of launch.placement.workers) {
    const port = await freePort(launch.host);
    const metricsPort = await freePort(launch.host);
    const source: Record<string, string> =
      "redisUrl" in launch.source
        ? {
            EXPERTMESH_REDIS_URL: launch.source.redisUrl,
            ...(launch.source.loadWindow === undefined
              ? {}
              : { EXPERTMESH_LOAD_WINDOW: launch.source.loadWindow }),
          }
        : { EXPERTMESH_PLACEMENT_FILE: launch.source.placementFile };
    specs.push({
      name: w.workerId,
      role: "expert-worker" as const,
      node: w.node,
      port,
      metricsPort,
      env: {
        ...commonEnv(launch, port, metricsPort),
        EXPERTMESH_WORKER_ID: w.workerId,
        EXPERTMESH_NODE: w.node,
        ...source,
      },
    });
  }
  return startAll(specs, launch);
}

export interface AttentionLaunch extends ServiceSettings {
  readonly count: number;
  readonly redisUrl: string;
  readonly workers: readonly ClusterMember[];
  readonly wire: WireDtypeName;
  readonly combine: CombineDtypeName;
  /** KV cache budget per node, MiB (the node's default when undefined). */
  readonly kvCacheMb?: number;
}

/** D attention nodes a0..aD-1, each told every worker's address; resolves once all are SERVING. */
export async function startAttentionNodes(launch: AttentionLaunch): Promise<ClusterMember[]> {
  const addresses = launch.workers.map((w) => `${w.name}=${w.address}`).join(",");
  const specs = [];
  for (let i = 0; i < launch.count; i++) {
    const port = await freePort(launch.host);
    const metricsPort = await freePort(launch.host);
    specs.push({
      name: `a${i}`,
      role: "attention" as const,
      port,
      metricsPort,
      env: {
        ...commonEnv(launch, port, metricsPort),
        EXPERTMESH_ATTENTION_ID: `a${i}`,
        EXPERTMESH_REDIS_URL: launch.redisUrl,
        EXPERTMESH_WORKER_ADDRESSES: addresses,
        EXPERTMESH_WIRE_DTYPE: launch.wire,
        EXPERTMESH_COMBINE_DTYPE: launch.combine,
        ...(launch.kvCacheMb === undefined ? {} : { EXPERTMESH_KV_CACHE_MB: String(launch.kvCacheMb) }),
      },
    });
  }
  return startAll(specs, launch);
}

export interface RouterLaunch extends ServiceSettings {
  readonly redisUrl: string;
  /** The attention nodes it admits requests to. */
  readonly attention: readonly ClusterMember[];
}

/**
 * The router (gRPC InferenceService + OpenAI HTTP API), told every attention node's address;
 * resolves once SERVING (its health turns SERVING when it has connected to the nodes). Its HTTP
 * port also serves /metrics, so it is the member's metricsPort.
 */
export async function startRouter(launch: RouterLaunch): Promise<ClusterMember> {
  const port = await freePort(launch.host);
  const httpPort = await freePort(launch.host);
  const [router] = await startAll(
    [
      {
        name: "router",
        role: "router",
        port,
        metricsPort: httpPort,
        env: {
          EXPERTMESH_MODEL_DIR: launch.modelDir,
          EXPERTMESH_HOST: launch.host,
          EXPERTMESH_PORT: String(port),
          EXPERTMESH_HTTP_PORT: String(httpPort),
          EXPERTMESH_LOG_LEVEL: launch.logLevel,
          // No EXPERTMESH_THREADS: the router runs no model (services refuse unknown variables).
          EXPERTMESH_DRAIN_TIMEOUT: commonEnv(launch, port, httpPort).EXPERTMESH_DRAIN_TIMEOUT!,
          EXPERTMESH_ATTENTION_ADDRESSES: launch.attention.map((a) => `${a.name}=${a.address}`).join(","),
          EXPERTMESH_REDIS_URL: launch.redisUrl,
        },
      },
    ],
    launch,
  );
  return router!;
}

/** Where the router listens, for `expertmesh up` to print. */
export function routerEndpoints(router: ClusterMember): { grpc: string; http: string } {
  const host = router.address.slice(0, router.address.lastIndexOf(":"));
  return { grpc: router.address, http: `http://${host}:${router.metricsPort}` };
}

export interface ClusterLaunch extends ServiceSettings {
  readonly attention: number;
  readonly workers: number;
  readonly nodes: number;
  readonly wire: WireDtypeName;
  readonly combine: CombineDtypeName;
  /** Load-accounting window of the workers ("10s"). */
  readonly loadWindow: string;
  /** Redis's working directory. */
  readonly redisDir: string;
  readonly kvCacheMb?: number;
}

export interface LocalCluster {
  readonly placement: Placement;
  readonly redisUrl: string;
  /** Redis, then workers, then attention nodes, then the router. */
  readonly members: readonly ClusterMember[];
  readonly router: ClusterMember;
  /** Resolves with the first member that exits (on its own: a crash, or someone killed it). */
  readonly firstExit: Promise<ClusterMember>;
  /** The router, then attention nodes, then workers, then Redis; resolves once every process group is gone, with how each exited. */
  stop(): Promise<{ member: ClusterMember; exit: ProcessExit }[]>;
  /** SIGKILL to every member now. */
  kill(): void;
}

export async function launchCluster(launch: ClusterLaunch): Promise<LocalCluster> {
  const config = await readModelConfig(launch.modelDir);
  const placement = defaultClusterPlacement(config, launch.workers, launch.nodes);
  if (!Number.isInteger(launch.attention) || launch.attention < 1) {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `--attention must be a positive integer, got ${launch.attention}`,
    );
  }

  const redis = await startRedis({
    dir: launch.redisDir,
    output: launch.output("redis"),
    timeoutMs: launch.readyTimeoutMs,
  });
  const redisMember: ClusterMember = {
    name: "redis",
    role: "redis",
    address: `127.0.0.1:${redis.port}`,
    metricsPort: undefined,
    node: undefined,
    process: redis.process,
  };
  let workers: ClusterMember[] = [];
  let attention: ClusterMember[] = [];
  try {
    const client = new Redis(redis.url, { maxRetriesPerRequest: 3 });
    try {
      await new PlacementStore(client).publish(placement);
    } finally {
      await client.quit();
    }
    workers = await startExpertWorkers({
      ...launch,
      placement,
      source: { redisUrl: redis.url, loadWindow: launch.loadWindow },
    });
    attention = await startAttentionNodes({
      ...launch,
      count: launch.attention,
      redisUrl: redis.url,
      workers,
    });
    const router = await startRouter({ ...launch, redisUrl: redis.url, attention });
    const members = [redisMember, ...workers, ...attention, router];
    const stop = (): Promise<{ member: ClusterMember; exit: ProcessExit }[]> =>
      stopMembers([[router], attention, workers, [redisMember]], launch.stopTimeoutMs);
    return {
      placement,
      redisUrl: redis.url,
      members,
      router,
      firstExit: Promise.race(members.map((m) => m.process.exited.then(() => m))),
      stop,
      kill: () => members.forEach((m) => m.process.kill()),
    };
  } catch (err) {
    await stopMembers([attention, workers, [redisMember]], launch.stopTimeoutMs);
    throw err;
  }
}

/** Per-member log files under `dir` (detached clusters). */
export function logFileOutput(dir: string): (name: string) => ProcessOutput {
  return (name) => ({ kind: "file", path: join(dir, `${name}.log`) });
}
