/**
 * router: the API front door — public gRPC InferenceService and the OpenAI-compatible HTTP API,
 * admission to the least-loaded attention node over one Serve stream per node. Bootstrap only —
 * configuration, logger, process lifecycle; the wiring is in server/.
 */
import { ExpertMeshError, createLogger, runService } from "@expertmesh/shared";
import { loadRouterConfig } from "./config.ts";
import type { RouterConfig } from "./config.ts";
import { startRouter } from "./server/start-router.ts";

function loadConfigOrExit(): RouterConfig {
  try {
    return loadRouterConfig();
  } catch (err) {
    // Every problem, one per line, before any logger exists.
    process.stderr.write(`router: ${ExpertMeshError.from(err).message}\n`);
    process.exit(2);
  }
}

const config = loadConfigOrExit();
const logger = createLogger({ service: "router", level: config.logLevel });

runService({
  name: "router",
  logger,
  drainTimeoutMs: config.drainTimeout,
  async start(lifecycle) {
    const router = await startRouter(config, lifecycle, logger);
    lifecycle.onChange((state) => {
      if (state === "ready")
        process.stdout.write(`router listening grpc=${router.grpcAddress} http=${router.httpUrl}\n`);
    });
    return router.handle;
  },
});
