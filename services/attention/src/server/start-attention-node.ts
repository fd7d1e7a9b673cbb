/**
 * Wires one attention process: placement (file, or Redis's current) → RemoteRoutedExperts to
 * the workers of the static topology → the model WITHOUT routed experts (read through a
 * RecordingCheckpoint, so the node can show it read no `mlp.experts.*` tensor) → EngineCore +
 * ServeLoop → gRPC server (AttentionService, health, reflection) + metrics server.
 * Returns the lifecycle handle runService drives.
 */
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import type { CombineDtype, RowDtype } from "@expertmesh/dispatch";
import { EngineCore } from "@expertmesh/engine";
import { loadModel, openCheckpoint } from "@expertmesh/model";
import type { DeepSeekModel } from "@expertmesh/model";
import { AttentionService, WireDtype } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  createGrpcServer,
  createMetricsRegistry,
  startMetricsServer,
} from "@expertmesh/shared";
import type { Lifecycle, Logger, ServiceHandle } from "@expertmesh/shared";
import { checkPlacementMatchesModel, readPlacement } from "../clients/placement-source.ts";
import { parseWorkerAddresses } from "../config.ts";
import type { AttentionConfig } from "../config.ts";
import { RecordingCheckpoint } from "../core/recording-checkpoint.ts";
import type { TensorReadCounts } from "../core/recording-checkpoint.ts";
import { ServeLoop } from "../core/serve-loop.ts";
import { createAttentionMetrics } from "./attention-metrics.ts";
import { attentionServiceImpl } from "./attention-service.ts";

export interface StartedAttentionNode {
  readonly handle: ServiceHandle;
  /** "host:port" the gRPC server listens on (the bound port, also when 0 was asked). */
  readonly address: string;
  readonly metricsPort: number;
  readonly placementVersion: number;
  readonly tensorsRead: TensorReadCounts;
}

const ROW_DTYPE: Readonly<Record<AttentionConfig["wireDtype"], RowDtype>> = {
  bf16: WireDtype.BF16,
  float32: WireDtype.FLOAT32,
  fp8: WireDtype.FP8_E4M3,
};
const COMBINE_DTYPE: Readonly<Record<AttentionConfig["combineDtype"], CombineDtype>> = {
  bf16: WireDtype.BF16,
  float32: WireDtype.FLOAT32,
};

/** How long shutdown waits for open streams after the drain before cancelling them. */
const SHUTDOWN_GRACE_MS = 2_000;

export async function startAttentionNode(
  config: AttentionConfig,
  lifecycle: Lifecycle,
  logger: Logger,
): Promise<StartedAttentionNode> {
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    const placement = await readPlacement({
      placementFile: config.placementFile,
      redisUrl: config.redisUrl,
      cluster: config.cluster,
    });

    const checkpoint = new RecordingCheckpoint(await openCheckpoint(config.modelDir));
    let model: DeepSeekModel;
    let remote: RemoteRoutedExperts;
    const registry = createMetricsRegistry({ defaultLabels: { attention: config.attentionId } });
    const metrics = createAttentionMetrics(registry, placement.shape.topkGroup);
    try {
      const modelConfig = checkpoint.config;
      checkPlacementMatchesModel(placement, modelConfig);
      remote = new RemoteRoutedExperts({
        placement,
        addresses: parseWorkerAddresses(config.workerAddresses),
        hiddenSize: modelConfig.hiddenSize,
        rowDtype: ROW_DTYPE[config.wireDtype],
        combineDtype: COMBINE_DTYPE[config.combineDtype],
        timeoutMs: config.dispatchTimeout,
        onNodesPerRow: (_layer, nodesPerRow) => metrics.observeNodesPerRow(nodesPerRow),
        onNodeLimitExceeded: (layer, nodes, limit) => {
          metrics.nodeLimitExceeded();
          logger.error(
            { layer, nodes, topkGroup: limit, placementVersion: placement.version },
            "a token reached more nodes than topk_group",
          );
        },
      });
      const backend = remote;
      cleanup.push(() => backend.close());
      await remote.waitForReady(config.workerConnectTimeout);
      model = await loadModel(checkpoint, {
        experts: "none",
        routedExperts: remote,
        threads: config.threads,
        executionProvider: config.executionProvider,
      });
    } finally {
      await checkpoint.close();
    }
    const loaded = model;
    cleanup.push(() => loaded.release());
    const tensorsRead = checkpoint.counts();
    logger.info(
      {
        placementVersion: placement.version,
        workers: placement.workers.length,
        nodes: placement.nodes.length,
        tensorsRead: tensorsRead.total,
        routedExpertTensorsRead: tensorsRead.routedExpert,
        wire: config.wireDtype,
        combine: config.combineDtype,
      },
      "model loaded without routed experts",
    );
    if (tensorsRead.routedExpert > 0) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `the attention node read ${tensorsRead.routedExpert} routed-expert tensors; it must read none`,
      );
    }

    const core = new EngineCore(model, {
      kvCacheBytes: config.kvCacheMb * 1024 * 1024,
      blockSize: config.kvBlockSize,
      maxNumBatchedTokens: config.maxBatchedTokens,
      maxNumSeqs: config.maxRunning,
    });
    const server = createGrpcServer({
      onHandlerError: (event) => {
        if (event.internal) logger.error({ err: event.error, method: event.method }, "grpc handler failed");
      },
    });
    const loop = new ServeLoop(core, {
      onStep: (stats, outputs) => metrics.observeStep(stats, outputs),
      onDead: (error) => {
        logger.error({ err: error.cause }, "engine failed; marking the node NOT_SERVING");
        server.setServingStatus("", "NOT_SERVING");
        server.setServingStatus(AttentionService.typeName, "NOT_SERVING");
      },
    });
    const backend = remote;
    metrics.watch({
      load: () => loop.load(),
      openStreams: () => loop.numSessions,
      dispatch: () => backend.stats,
      tensorsRead,
    });
    logger.info({ kvBlocks: core.pool.numBlocks, kvBlockSize: core.pool.blockSize }, "engine ready");

    server.addService(
      AttentionService,
      attentionServiceImpl({ loop, logger, defaultMaxTokens: config.defaultMaxTokens }),
    );
    const port = await server.bind(`${config.host}:${config.port}`);
    cleanup.push(async () => {
      await loop.close(new ExpertMeshError(Code.UNAVAILABLE, "attention node is shutting down"));
      await server.shutdown(SHUTDOWN_GRACE_MS);
    });
    const metricsServer = await startMetricsServer({
      registry,
      port: config.metricsPort,
      health: lifecycle,
      logger,
    });
    cleanup.push(() => metricsServer.close());

    return {
      address: `${config.host}:${port}`,
      metricsPort: metricsServer.port,
      placementVersion: placement.version,
      tensorsRead,
      handle: {
        async drain(signal) {
          // Leave the load balancer first, then let running sequences finish.
          server.setServingStatus("", "NOT_SERVING");
          server.setServingStatus(AttentionService.typeName, "NOT_SERVING");
          loop.startDrain();
          await loop.drained(signal);
        },
        async stop() {
          // Reverse order of acquisition: servers, engine, then the worker streams.
          for (const release of cleanup.reverse()) await release();
        },
      },
    };
  } catch (err) {
    for (const release of cleanup.reverse()) await release().catch(() => undefined);
    throw err;
  }
}
