/**
 * attention: the attention-and-gating node — MLA over a paged latent KV cache, gates, shared
 * experts and sampling, with routed experts dispatched to the expert-workers. Serves
 * AttentionService to the router. Bootstrap only — configuration, logger, process lifecycle;
 * the wiring is in server/.
 */
import { ExpertMeshError, createLogger, runService } from "@expertmesh/shared";
import { loadAttentionConfig } from "./config.ts";
import { startAttentionNode } from "./server/start-attention-node.ts";

let config;
try {
  config = loadAttentionConfig();
} catch (err) {
  process.stderr.write(`attention: ${ExpertMeshError.from(err).message}\n`);
  process.exit(2);
}
const { attentionId } = config;
const logger = createLogger({ service: "attention", level: config.logLevel, bindings: { attentionId } });

runService({
  name: "attention",
  logger,
  drainTimeoutMs: config.drainTimeout,
  async start(lifecycle) {
    const node = await startAttentionNode(config, lifecycle, logger);
    lifecycle.onChange((state) => {
      if (state === "ready") process.stdout.write(`attention ${attentionId} listening on ${node.address}\n`);
    });
    return node.handle;
  },
});
