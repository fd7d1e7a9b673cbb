/**
 * The attention node's Prometheus metrics, on the service's own registry: engine steps and load,
 * sequences by outcome, dispatch traffic, the nodes each token reached per MoE layer (the
 * ≤ topk_group invariant, measured), and how many checkpoint tensors were read (routed experts: 0).
 */
import type { EngineCoreOutput, StepStats } from "@expertmesh/engine";
import { Counter, Gauge, Histogram, exponentialBuckets } from "@expertmesh/shared";
import type { Registry } from "@expertmesh/shared";
import type { TensorReadCounts } from "../core/recording-checkpoint.ts";
import type { EngineLoad } from "../core/serve-loop.ts";

/** What the metrics read when scraped. */
export interface AttentionMetricsSources {
  readonly load: () => EngineLoad;
  readonly openStreams: () => number;
  /** RemoteRoutedExperts' counters. */
  readonly dispatch: () => { readonly runs: number; readonly requests: number; readonly rowsSent: number };
  readonly tensorsRead: TensorReadCounts;
}

export interface AttentionMetrics {
  /** Registers the metrics read from the running node when scraped (once, when it is wired). */
  watch(sources: AttentionMetricsSources): void;
  /** Feeds RemoteRoutedExperts' onNodesPerRow: one observation per token per MoE layer. */
  observeNodesPerRow(nodesPerRow: Int32Array): void;
  /** RemoteRoutedExperts' onNodeLimitExceeded. */
  nodeLimitExceeded(): void;
  /** ServeLoop's onStep. */
  observeStep(stats: StepStats | null, outputs: readonly EngineCoreOutput[]): void;
}

export function createAttentionMetrics(registry: Registry, topkGroup: number): AttentionMetrics {
  const nodesPerToken = new Histogram({
    name: "expertmesh_attention_nodes_per_token",
    help: "Distinct nodes a token's routed experts were dispatched to, per token and MoE layer (invariant: ≤ topk_group)",
    // One bucket per node count up to twice the limit, so a violation shows which count it was.
    buckets: Array.from({ length: Math.max(2 * topkGroup, 8) }, (_, i) => i + 1),
    registers: [registry],
  });
  const limitExceeded = new Counter({
    name: "expertmesh_attention_node_limit_exceeded_total",
    help: "Dispatches (layer × micro-batch) in which some token reached more than topk_group nodes",
    registers: [registry],
  });
  const steps = new Counter({
    name: "expertmesh_attention_engine_steps_total",
    help: "Engine steps that ran the model",
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: "expertmesh_attention_engine_step_seconds",
    help: "Wall time of one engine step (forward incl. dispatch/combine, and sampling)",
    buckets: exponentialBuckets(0.001, 2, 14),
    registers: [registry],
  });
  const scheduledTokens = new Counter({
    name: "expertmesh_attention_scheduled_tokens_total",
    help: "Tokens run through the model (prefill chunks and decodes)",
    registers: [registry],
  });
  const generatedTokens = new Counter({
    name: "expertmesh_attention_generated_tokens_total",
    help: "Tokens sampled",
    registers: [registry],
  });
  const preemptions = new Counter({
    name: "expertmesh_attention_preemptions_total",
    help: "Sequences preempted for KV blocks",
    registers: [registry],
  });
  const finished = new Counter({
    name: "expertmesh_attention_sequences_finished_total",
    help: "Sequences ended, by engine finish reason (stop, length, abort, error)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  return {
    watch(sources) {
      new Gauge({
        name: "expertmesh_attention_checkpoint_tensors_read",
        help: "Checkpoint tensors this node read at startup, by kind (routed_expert must be 0: those live on the expert-workers)",
        labelNames: ["kind"] as const,
        registers: [registry],
        collect() {
          const { total, routedExpert } = sources.tensorsRead;
          this.set({ kind: "routed_expert" }, routedExpert);
          this.set({ kind: "other" }, total - routedExpert);
        },
      });
      const loadGauge = (name: string, help: string, pick: (l: EngineLoad) => number): void => {
        new Gauge({
          name,
          help,
          registers: [registry],
          collect() {
            this.set(pick(sources.load()));
          },
        });
      };
      loadGauge(
        "expertmesh_attention_running_sequences",
        "Sequences being prefilled or decoded",
        (l) => l.running,
      );
      loadGauge(
        "expertmesh_attention_waiting_sequences",
        "Sequences waiting for KV blocks or a batch slot",
        (l) => l.waiting,
      );
      loadGauge(
        "expertmesh_attention_kv_blocks_free",
        "Free blocks of the paged latent KV cache",
        (l) => l.freeKvBlocks,
      );
      loadGauge(
        "expertmesh_attention_kv_blocks_total",
        "Blocks of the paged latent KV cache",
        (l) => l.totalKvBlocks,
      );
      new Gauge({
        name: "expertmesh_attention_serve_streams",
        help: "Open Serve streams (router connections)",
        registers: [registry],
        collect() {
          this.set(sources.openStreams());
        },
      });
      const dispatchCounter = (
        name: string,
        help: string,
        pick: (d: ReturnType<AttentionMetricsSources["dispatch"]>) => number,
      ): void => {
        let reported = 0;
        new Counter({
          name,
          help,
          registers: [registry],
          collect() {
            const now = pick(sources.dispatch());
            if (now > reported) this.inc(now - reported);
            reported = now;
          },
        });
      };
      dispatchCounter(
        "expertmesh_attention_dispatch_runs_total",
        "MoE layer dispatches (one per step per MoE layer)",
        (d) => d.runs,
      );
      dispatchCounter(
        "expertmesh_attention_dispatch_requests_total",
        "Dispatch requests sent to workers",
        (d) => d.requests,
      );
      dispatchCounter(
        "expertmesh_attention_dispatch_rows_total",
        "Hidden rows sent to workers (a token counts once per worker it needs)",
        (d) => d.rowsSent,
      );
    },
    observeNodesPerRow(nodesPerRow) {
      for (const n of nodesPerRow) nodesPerToken.observe(n);
    },
    nodeLimitExceeded() {
      limitExceeded.inc();
    },
    observeStep(stats, outputs) {
      if (stats !== null) {
        steps.inc();
        stepSeconds.observe(stats.executeMs / 1000);
        scheduledTokens.inc(stats.numScheduledTokens);
        if (stats.preemptedRequestIds.length > 0) preemptions.inc(stats.preemptedRequestIds.length);
      }
      let sampled = 0;
      for (const o of outputs) {
        sampled += o.newTokenIds.length;
        if (o.finishReason !== null) finished.inc({ reason: o.finishReason });
      }
      if (sampled > 0) generatedTokens.inc(sampled);
    },
  };
}
