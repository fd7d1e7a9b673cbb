/**
 * expert-worker: serves the routed experts of its placement slice over ExpertService.Dispatch.
 * Bootstrap only — configuration, logger, process lifecycle; the wiring is in server/.
 */
import { ExpertMeshError, createLogger, runService } from "@expertmesh/shared";
import { loadWorkerConfig } from "./config.ts";
import type { WorkerConfig } from "./config.ts";
import { startExpertWorker } from "./server/start-expert-worker.ts";

function loadConfigOrExit(): WorkerConfig {
  try {
    return loadWorkerConfig();
  } catch (err) {
    // Every problem, one per line, before any logger exists.
    process.stderr.write(`expert-worker: ${ExpertMeshError.from(err).message}\n`);
    process.exit(2);
  }
}

const config = loadConfigOrExit();
const { workerId } = config;
const logger = createLogger({ service: "expert-worker", level: config.logLevel, bindings: { workerId } });

runService({
  name: "expert-worker",
  logger,
  drainTimeoutMs: config.drainTimeout,
  async start(lifecycle) {
    const worker = await startExpertWorker(config, lifecycle, logger);
    lifecycle.onChange((state) => {
      if (state === "ready")
        process.stdout.write(`expert-worker ${workerId} listening on ${worker.address}\n`);
    });
    return worker.handle;
  },
});
