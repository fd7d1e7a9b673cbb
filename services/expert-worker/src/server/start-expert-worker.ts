/**
 * Wires one expert-worker process: placement (file, or the current one in Redis) → this worker's
 * slice read from the checkpoint (nothing else is) → core → gRPC server (ExpertService, health,
 * reflection) + metrics server + load flushing. Returns the lifecycle handle runService drives.
 */
import { readFile } from "node:fs/promises";
import { loadRoutedExperts, openCheckpoint } from "@expertmesh/model";
import { LoadRecorder, PlacementKeys, PlacementStore, placementFromJSON } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { ExpertService, MemberStatus } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  createGrpcServer,
  createMetricsRegistry,
  startMetricsServer,
} from "@expertmesh/shared";
import type { Lifecycle, Logger, ServiceHandle, ServiceState } from "@expertmesh/shared";
import { Redis } from "ioredis";
import type { WorkerConfig } from "../config.ts";
import { ExpertWorker } from "../core/expert-worker.ts";
import { checkPlacementFitsModel, heldExperts } from "../core/held-experts.ts";
import { ExpertServiceHandlers } from "./expert-service-handlers.ts";
import { LoadFlusher } from "./load-flusher.ts";
import { createWorkerMetrics } from "./worker-metrics.ts";

export interface StartedExpertWorker {
  readonly handle: ServiceHandle;
  /** "host:port" the gRPC server listens on (the bound port, also when 0 was asked). */
  readonly address: string;
  readonly metricsPort: number;
  readonly placementVersion: number;
}

const MEMBER_STATUS: Readonly<Record<ServiceState, MemberStatus>> = {
  starting: MemberStatus.STARTING,
  ready: MemberStatus.SERVING,
  draining: MemberStatus.DRAINING,
  stopped: MemberStatus.UNAVAILABLE,
};

/** How long shutdown waits for calls after the drain before cancelling them. */
const SHUTDOWN_GRACE_MS = 2_000;

export async function startExpertWorker(
  config: WorkerConfig,
  lifecycle: Lifecycle,
  logger: Logger,
): Promise<StartedExpertWorker> {
  const redis =
    config.redisUrl === undefined
      ? undefined
      : new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    if (redis !== undefined) {
      await redis.connect();
      cleanup.push(() => redis.quit());
    }
    const keys = new PlacementKeys({ cluster: config.cluster });
    const placement = await readPlacement(config, redis, keys);
    const held = heldExperts(placement, config.workerId, config.node);

    const checkpoint = await openCheckpoint(config.modelDir);
    const { hiddenSize } = checkpoint.config;
    const experts = await (async () => {
      try {
        checkPlacementFitsModel(placement, checkpoint.config);
        // Reads only the held experts' tensors.
        return await loadRoutedExperts(checkpoint, held.experts, {
          executionProvider: config.executionProvider,
          threads: config.threads,
        });
      } finally {
        await checkpoint.close();
      }
    })();
    cleanup.push(() => experts.release());
    const loadedExperts = [...held.experts.values()].reduce((n, e) => n + e.length, 0);
    logger.info(
      {
        placementVersion: placement.version,
        node: held.node,
        layers: held.experts.size,
        experts: loadedExperts,
      },
      "expert slice loaded",
    );

    const recorder = redis === undefined ? undefined : new LoadRecorder(redis, { placement, keys });
    const worker = new ExpertWorker({
      placement,
      held,
      experts,
      ...(recorder === undefined ? {} : { load: recorder }),
    });
    const registry = createMetricsRegistry({ defaultLabels: { worker: config.workerId } });
    const metrics = createWorkerMetrics(registry, worker);
    const handlers = new ExpertServiceHandlers(
      { worker, metrics, logger, status: () => MEMBER_STATUS[lifecycle.state] },
      hiddenSize,
    );

    const server = createGrpcServer({
      onHandlerError: (event) => {
        if (event.internal) logger.error({ err: event.error, method: event.method }, "grpc handler failed");
      },
    });
    server.addService(ExpertService, handlers.impl());
    const port = await server.bind(`${config.host}:${config.port}`);
    cleanup.push(() => server.shutdown(SHUTDOWN_GRACE_MS));
    const metricsServer = await startMetricsServer({
      registry,
      port: config.metricsPort,
      health: lifecycle,
      logger,
    });
    cleanup.push(() => metricsServer.close());

    const flusher =
      recorder === undefined
        ? undefined
        : new LoadFlusher({
            recorder,
            windowMs: config.loadWindow,
            logger,
            onFlush: (outcome) => metrics.loadFlushes.inc({ outcome }),
          });
    flusher?.start();

    const stopAll = async (): Promise<void> => {
      // Release in reverse order of acquisition: servers first, then experts, then Redis.
      for (const release of cleanup.reverse()) await release();
    };
    return {
      address: `${config.host}:${port}`,
      metricsPort: metricsServer.port,
      placementVersion: placement.version,
      handle: {
        async drain(signal) {
          server.setServingStatus("", "NOT_SERVING");
          server.setServingStatus(ExpertService.typeName, "NOT_SERVING");
          await handlers.drain(signal);
          await flusher?.stop();
        },
        stop: stopAll,
      },
    };
  } catch (err) {
    for (const release of cleanup.reverse()) await release().catch(() => undefined);
    redis?.disconnect();
    throw err;
  }
}

/** The placement this worker serves: EXPERTMESH_PLACEMENT_FILE, else Redis's current version. */
async function readPlacement(
  config: WorkerConfig,
  redis: Redis | undefined,
  keys: PlacementKeys,
): Promise<Placement> {
  if (config.placementFile !== undefined) {
    let text: string;
    try {
      text = await readFile(config.placementFile, "utf8");
    } catch (err) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `cannot read EXPERTMESH_PLACEMENT_FILE ${config.placementFile}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return placementFromJSON(text);
  }
  if (redis === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      "no placement source: set EXPERTMESH_PLACEMENT_FILE (a placement JSON) or EXPERTMESH_REDIS_URL (reads the current placement)",
    );
  }
  const placement = await new PlacementStore(redis, { keys }).current();
  if (placement === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `no placement published in Redis (${keys.current} is unset): publish one, or set EXPERTMESH_PLACEMENT_FILE`,
    );
  }
  return placement;
}
