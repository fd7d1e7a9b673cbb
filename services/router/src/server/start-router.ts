/**
 * Wires one router process: the model's config.json (vocabulary, context, EOS; no weights are
 * read) and tokenizer → one Serve stream per attention node → GenerationEngine → gRPC server
 * (InferenceService, health, reflection) + HTTP server (OpenAI API, /metrics, health). With Redis
 * configured: GetClusterState's placement, and the batch jobs (BatchService, /v1/batch_jobs,
 * and this router's batch worker). Returns the lifecycle handle runService drives.
 */
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { parseModelConfig } from "@expertmesh/model";
import type { ModelConfig } from "@expertmesh/model";
import { PlacementKeys, PlacementStore } from "@expertmesh/placement";
import { BatchService, InferenceService, WireDtype } from "@expertmesh/proto";
import {
  Code,
  ExpertMeshError,
  createGrpcServer,
  createMetricsRegistry,
  startMetricsServer,
} from "@expertmesh/shared";
import type { Lifecycle, Logger, ServiceHandle } from "@expertmesh/shared";
import { loadTokenizer } from "@expertmesh/tokenizer";
import { Redis } from "ioredis";
import { batchOptionsFromConfig, isBatchHttpPath, startBatchJobs } from "../batch/index.ts";
import type { BatchModule } from "../batch/index.ts";
import { AttentionNodePool } from "../clients/attention-node-pool.ts";
import { parseAttentionAddresses } from "../config.ts";
import type { RouterConfig } from "../config.ts";
import { GenerationEngine } from "../core/generation-engine.ts";
import { startHttpApi } from "./http-api.ts";
import type { ExtraHttpRoutes } from "./http-api.ts";
import { inferenceServiceImpl } from "./inference-service.ts";
import type { ModelInfoInit } from "./inference-service.ts";
import { createRouterMetrics } from "./router-metrics.ts";

export interface StartedRouter {
  readonly handle: ServiceHandle;
  /** "host:port" of the gRPC server (the bound port, also when 0 was asked). */
  readonly grpcAddress: string;
  /** http://host:port of the OpenAI-compatible API. */
  readonly httpUrl: string;
  readonly engine: GenerationEngine;
}

/** How long shutdown waits for calls after the drain before cancelling them. */
const SHUTDOWN_GRACE_MS = 2_000;

export async function startRouter(
  config: RouterConfig,
  lifecycle: Lifecycle,
  logger: Logger,
): Promise<StartedRouter> {
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    const modelConfig = await readModelConfig(config.modelDir);
    const tokenizer = await loadTokenizer(config.modelDir);
    const maxModelLen = Math.min(
      config.maxModelLen ?? modelConfig.maxPositionEmbeddings,
      modelConfig.maxPositionEmbeddings,
    );
    if (config.maxModelLen !== undefined && config.maxModelLen > modelConfig.maxPositionEmbeddings) {
      logger.warn(
        { maxModelLen: config.maxModelLen, maxPositionEmbeddings: modelConfig.maxPositionEmbeddings },
        "EXPERTMESH_MAX_MODEL_LEN exceeds the model's max_position_embeddings; using the latter",
      );
    }
    const modelName = config.modelName ?? basename(resolve(config.modelDir));
    logger.info(
      { model: modelName, vocab: modelConfig.vocabSize, maxModelLen, tokenizer: tokenizer !== null },
      "model config read",
    );

    const pool = new AttentionNodePool({
      addresses: parseAttentionAddresses(config.attentionAddresses),
      pollIntervalMs: config.loadPollInterval,
      logger,
    });
    pool.start();
    cleanup.push(() => pool.close(AbortSignal.timeout(SHUTDOWN_GRACE_MS)));

    const registry = createMetricsRegistry();
    // The gauges read the engine when scraped (it exists by then).
    const observer = createRouterMetrics(registry, {
      running: () => engine.numRunning,
      waiting: () => engine.numWaiting,
      nodes: () => pool.nodes.map((n) => ({ id: n.id, serving: n.serving })),
    });
    const engine = new GenerationEngine({
      pool,
      tokenizer,
      modelName,
      limits: { vocabSize: modelConfig.vocabSize, maxModelLen, defaultMaxTokens: config.defaultMaxTokens },
      eosTokenIds: modelConfig.eosTokenIds,
      maxQueuedRequests: config.maxQueuedRequests,
      observer,
    });

    const redis =
      config.redisUrl === undefined
        ? undefined
        : new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 });
    if (redis !== undefined) {
      await redis.connect();
      cleanup.push(() => redis.quit());
    }
    const placementStore =
      redis === undefined
        ? undefined
        : new PlacementStore(redis, { keys: new PlacementKeys({ cluster: config.cluster }) });
    // Batch jobs live in the same Redis. The worker may pick up queued jobs before the attention
    // nodes serve; their generations then wait in admission or are retried with backoff.
    let batch: BatchModule | undefined;
    if (config.redisUrl !== undefined) {
      const started = await startBatchJobs({
        redisUrl: config.redisUrl,
        cluster: config.cluster,
        generation: engine,
        options: batchOptionsFromConfig(config),
        logger,
      });
      batch = started;
      cleanup.push(() => started.close());
    }

    // NOT_SERVING until the attention nodes are connected (below): a launcher or a kubelet
    // waiting on gRPC health sees the router ready only when it can take requests.
    const server = createGrpcServer({
      initialStatus: "NOT_SERVING",
      onHandlerError: (event) => {
        if (event.internal) logger.error({ err: event.error, method: event.method }, "grpc handler failed");
      },
    });
    server.addService(
      InferenceService,
      inferenceServiceImpl({
        generation: engine,
        modelInfo: modelInfo(modelName, modelConfig, maxModelLen),
        attentionNodes: () => pool.states(),
        ...(placementStore === undefined ? {} : { placement: () => placementStore.current() }),
      }),
    );
    if (batch !== undefined) server.addService(BatchService, batch.service);
    const port = await server.bind(`${config.host}:${config.port}`);
    cleanup.push(() => server.shutdown(SHUTDOWN_GRACE_MS));

    const http = await startHttpApi({
      generation: engine,
      tokenizer,
      registry,
      health: lifecycle,
      logger,
      apiKey: config.apiKey,
      host: config.host,
      port: config.httpPort,
      ...(batch === undefined ? {} : { extraRoutes: batchHttpRoutes(batch) }),
    });
    cleanup.push(() => http.close(SHUTDOWN_GRACE_MS));
    if (config.metricsPort !== undefined) {
      const metricsServer = await startMetricsServer({
        registry,
        port: config.metricsPort,
        health: lifecycle,
        logger,
      });
      cleanup.push(() => metricsServer.close());
    }

    // Requests can be admitted as soon as one node serves; waiting for all keeps a freshly
    // started cluster from piling everything onto the first node that answers.
    const missing = await pool.waitUntilServing(config.attentionConnectTimeout);
    if (missing.length > 0) {
      logger.warn({ nodes: missing }, "attention nodes not serving yet; starting anyway (they are retried)");
    }
    server.setServingStatus("", "SERVING");
    server.setServingStatus(InferenceService.typeName, "SERVING");
    if (batch !== undefined) server.setServingStatus(BatchService.typeName, "SERVING");

    const host = config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
    return {
      grpcAddress: `${config.host}:${port}`,
      httpUrl: `http://${host}:${http.port}`,
      engine,
      handle: {
        async drain(signal) {
          // Leave the load balancer first, refuse new work, let running requests finish.
          server.setServingStatus("", "NOT_SERVING");
          server.setServingStatus(InferenceService.typeName, "NOT_SERVING");
          if (batch !== undefined) {
            server.setServingStatus(BatchService.typeName, "NOT_SERVING");
            // Running batch jobs abort their generations and go back to the queue for another
            // router, before the engine stops admitting (it would fail their prompts instead).
            await batch.stopWorker();
          }
          engine.close();
          await engine.idle(signal);
        },
        async stop() {
          for (const release of cleanup.reverse()) await release();
        },
      },
    };
  } catch (err) {
    for (const release of cleanup.reverse()) await release().catch(() => undefined);
    throw err;
  }
}

/** The batch routes under /v1 (the API key applies), handed to the batch module. */
function batchHttpRoutes(batch: BatchModule): ExtraHttpRoutes {
  return { matches: isBatchHttpPath, handle: (request) => batch.handleHttp(request) };
}

/** config.json only: the router needs the model's limits, never its weights. */
async function readModelConfig(modelDir: string): Promise<ModelConfig> {
  const path = join(modelDir, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `${modelDir}: not a checkpoint directory (cannot read config.json)`,
      {
        details: { file: path },
        cause: err,
      },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ExpertMeshError(Code.FAILED_PRECONDITION, `${path}: not valid JSON`, {
      details: { file: path },
      cause: err,
    });
  }
  return parseModelConfig(raw, path);
}

function modelInfo(name: string, c: ModelConfig, maxModelLen: number): ModelInfoInit {
  return {
    name,
    numLayers: c.numLayers,
    firstKDenseReplace: c.firstKDenseReplace,
    hiddenSize: c.hiddenSize,
    vocabSize: c.vocabSize,
    nRoutedExperts: c.nRoutedExperts,
    nSharedExperts: c.nSharedExperts,
    numExpertsPerTok: c.numExpertsPerTok,
    nGroup: c.nGroup,
    topkGroup: c.topkGroup,
    maxContextLength: maxModelLen,
    weightDtype: c.weightBlockSize === null ? "bf16" : "fp8_e4m3",
    // The wire formats are the attention nodes' settings; the router does not know them.
    dispatchDtype: WireDtype.UNSPECIFIED,
    combineDtype: WireDtype.UNSPECIFIED,
  };
}
