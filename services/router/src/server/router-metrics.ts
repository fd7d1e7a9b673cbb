/**
 * The router's Prometheus metrics, vLLM's names with the `expertmesh_` prefix: requests by finish
 * reason, prompt and generation tokens, TTFT / TPOT / end-to-end latency histograms, running and
 * waiting gauges (read from the engine when scraped), and each attention node's reachability.
 */
import { Code, Counter, Gauge, Histogram } from "@expertmesh/shared";
import type { Registry } from "@expertmesh/shared";
import type { GenerationObserver, RequestOutcome } from "../core/generation-engine.ts";

export interface RouterMetricsSources {
  running(): number;
  waiting(): number;
  /** node id → serving */
  nodes(): readonly { id: string; serving: boolean }[];
}

// vLLM's bucket boundaries.
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640,
  2560,
];
const TPOT_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80,
];
const LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680,
];

export function createRouterMetrics(registry: Registry, sources: RouterMetricsSources): GenerationObserver {
  const requests = new Counter({
    name: "expertmesh_request_success_total",
    help: "Requests that finished, by finish reason (stop, length, cancelled)",
    labelNames: ["finished_reason"] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: "expertmesh_request_failure_total",
    help: "Requests that failed, by status code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...)",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const promptTokens = new Counter({
    name: "expertmesh_prompt_tokens_total",
    help: "Prompt tokens of admitted requests",
    registers: [registry],
  });
  const generationTokens = new Counter({
    name: "expertmesh_generation_tokens_total",
    help: "Tokens generated",
    registers: [registry],
  });
  const ttft = new Histogram({
    name: "expertmesh_time_to_first_token_seconds",
    help: "Time from a request's arrival to its first generated token",
    buckets: TTFT_BUCKETS,
    registers: [registry],
  });
  const tpot = new Histogram({
    name: "expertmesh_time_per_output_token_seconds",
    help: "Mean time between a request's output tokens after the first",
    buckets: TPOT_BUCKETS,
    registers: [registry],
  });
  const e2e = new Histogram({
    name: "expertmesh_e2e_request_latency_seconds",
    help: "Time from a request's arrival to its end",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const queueTime = new Histogram({
    name: "expertmesh_request_queue_time_seconds",
    help: "Time a request waited in the router's queue for an attention slot",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: "expertmesh_num_requests_running",
    help: "Requests running on attention nodes",
    registers: [registry],
    collect() {
      this.set(sources.running());
    },
  });
  new Gauge({
    name: "expertmesh_num_requests_waiting",
    help: "Requests waiting in the router's queue for an attention slot",
    registers: [registry],
    collect() {
      this.set(sources.waiting());
    },
  });
  new Gauge({
    name: "expertmesh_attention_node_up",
    help: "1 when the attention node is serving (GetLoad answered, Serve stream open), else 0",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      for (const n of sources.nodes()) this.set({ node: n.id }, n.serving ? 1 : 0);
    },
  });

  return {
    onRequestEnd(o: RequestOutcome) {
      if (o.reason === "error") failures.inc({ code: Code[o.code ?? Code.UNKNOWN] ?? String(o.code) });
      else requests.inc({ finished_reason: o.reason });
      if (o.queueSeconds !== undefined) {
        promptTokens.inc(o.promptTokens);
        queueTime.observe(o.queueSeconds);
      }
      generationTokens.inc(o.completionTokens);
      if (o.ttftSeconds !== undefined) ttft.observe(o.ttftSeconds);
      if (o.tpotSeconds !== undefined) tpot.observe(o.tpotSeconds);
      e2e.observe(o.e2eSeconds);
    },
  };
}
