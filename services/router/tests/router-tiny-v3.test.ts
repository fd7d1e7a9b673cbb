/**
 * The router end to end on the tiny-v3 fixture (no tokenizer: token-id prompts): a real
 * expert-worker, attention node and router as processes. The official `openai` client and the
 * generated gRPC client reproduce the fixture's greedy tokens and logprobs; bad inputs are 400s
 * naming the parameter; overload is 429; cancelling mid-stream gives the KV blocks back on the
 * attention node; health, reflection, GetClusterState and /metrics answer.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { FinishReason, InferenceService, MemberStatus } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient } from "@expertmesh/shared";
import { waitUntil } from "@expertmesh/shared/testing";
import { REPO_ROOT, TINY_V3, scrapeMetrics, startRouterCluster } from "./router-cluster.ts";
import type { RouterCluster } from "./router-cluster.ts";

interface GoldenPrompt {
  name: string;
  tokens: number[];
  greedy: { generated: number[]; steps: { logits: number[] }[] };
}

/** log-softmax of `logits` at `index`, in float64. */
function logSoftmaxAt(logits: readonly number[], index: number): number {
  const max = Math.max(...logits);
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  return (logits[index] as number) - max - Math.log(sum);
}

const MAX_RUNNING = 2;

describe("router on tiny-v3 (token ids)", { timeout: 120_000 }, () => {
  let cluster: RouterCluster;
  let openai: OpenAI;
  let channel: GrpcChannel;
  let grpc: GrpcClient<typeof InferenceService>;
  let golden: GoldenPrompt[];

  before(async () => {
    golden = (JSON.parse(await readFile(`${TINY_V3}/golden.json`, "utf8")) as { prompts: GoldenPrompt[] })
      .prompts;
    cluster = await startRouterCluster({
      modelDir: TINY_V3,
      // float32 on the wire: the distributed forward matches the golden logits (invariant 1).
      attentionEnv: {
        EXPERTMESH_WIRE_DTYPE: "float32",
        EXPERTMESH_COMBINE_DTYPE: "float32",
        EXPERTMESH_MAX_RUNNING: String(MAX_RUNNING),
      },
      routerEnv: { EXPERTMESH_MAX_QUEUED_REQUESTS: "1" },
    });
    openai = new OpenAI({ baseURL: `${cluster.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    channel = createGrpcChannel(cluster.grpcAddress);
    grpc = createGrpcClient(InferenceService, channel);
  });
  after(async () => {
    channel?.close();
    await cluster?.stop();
  });

  /** Waits until the attention node holds no sequence and every KV block is free again. */
  async function nodeIdle(): Promise<void> {
    await waitUntil(
      async () => {
        const load = await cluster.attention.getLoad({});
        return load.running === 0 && load.waiting === 0 && load.freeKvBlocks === load.totalKvBlocks;
      },
      { what: "attention node idle with every KV block free", timeoutMs: 15_000 },
    );
  }

  it("lists the served model", async () => {
    const models = await openai.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ["tiny-v3"],
    );
  });

  it("reproduces the golden greedy tokens and their logprobs (prompts concurrently, one node stream)", async () => {
    const results = await Promise.all(
      golden.map((g) =>
        openai.completions.create({
          model: "tiny-v3",
          prompt: g.tokens,
          max_tokens: g.greedy.generated.length,
          temperature: 0,
          logprobs: 2,
          // vLLM's extension: logprob tokens as `token_id:N`; return_token_ids adds the ids.
          ...{ return_tokens_as_token_ids: true, return_token_ids: true },
        }),
      ),
    );
    results.forEach((r, i) => {
      const g = golden[i]!;
      const choice = r.choices[0]!;
      assert.equal(choice.finish_reason, "length");
      assert.equal(choice.text, "", "no tokenizer: no text");
      assert.deepEqual((choice as unknown as { token_ids: number[] }).token_ids, g.greedy.generated, g.name);
      const lp = choice.logprobs!;
      assert.deepEqual(
        lp.tokens,
        g.greedy.generated.map((t) => `token_id:${t}`),
        g.name,
      );
      lp.token_logprobs!.forEach((value, k) => {
        const want = logSoftmaxAt(g.greedy.steps[k]!.logits, g.greedy.generated[k]!);
        assert.ok(Math.abs(value - want) < 5e-3, `${g.name} step ${k}: logprob ${value} vs golden ${want}`);
        const top = lp.top_logprobs![k]!;
        assert.equal(Object.keys(top).length, 2);
        assert.equal(
          Object.keys(top)[0],
          `token_id:${g.greedy.generated[k]}`,
          "greedy: the chosen token is the likeliest",
        );
      });
      assert.deepEqual(r.usage, {
        prompt_tokens: g.tokens.length,
        completion_tokens: g.greedy.generated.length,
        total_tokens: g.tokens.length + g.greedy.generated.length,
      });
    });
  });

  it("streams Generate over gRPC through the generated client", async () => {
    const g = golden[0]!;
    const chunks = [];
    for await (const chunk of grpc.generate({
      requestId: "grpc-1",
      prompt: { case: "tokenIds", value: { ids: g.tokens } },
      sampling: { maxTokens: 8 },
      topLogprobs: 3,
    })) {
      chunks.push(chunk);
    }
    assert.ok(chunks.length >= 2, "token chunks, then the final one");
    assert.ok(chunks.every((c) => c.requestId === "grpc-1"));
    assert.deepEqual(
      chunks.flatMap((c) => c.tokenIds),
      g.greedy.generated,
    );
    const logprobs = chunks.flatMap((c) => c.logprobs);
    assert.equal(logprobs.length, 8);
    assert.ok(logprobs.every((l) => l.topTokenIds.length === 3 && l.logprob < 0));
    const last = chunks[chunks.length - 1]!;
    assert.equal(last.finishReason, FinishReason.LENGTH);
    assert.deepEqual([last.usage?.promptTokens, last.usage?.completionTokens], [5, 8]);
    assert.ok(chunks.slice(0, -1).every((c) => c.finishReason === FinishReason.UNSPECIFIED));
  });

  it("ends at a stop token id with finish reason stop", async () => {
    const g = golden[0]!;
    const r = await openai.completions.create({
      model: "tiny-v3",
      prompt: g.tokens,
      max_tokens: 8,
      temperature: 0,
      ...{ stop_token_ids: [g.greedy.generated[2]], return_token_ids: true },
    });
    assert.equal(r.choices[0]!.finish_reason, "stop");
    assert.deepEqual(
      (r.choices[0] as unknown as { token_ids: number[] }).token_ids,
      g.greedy.generated.slice(0, 3),
    );
  });

  it("answers bad inputs with 400 naming the parameter", async () => {
    const base = { model: "tiny-v3", prompt: [68, 0, 408], max_tokens: 4 };
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: -1 }, "temperature"],
      [{ top_p: 0 }, "top_p"],
      [{ top_k: -2 }, "top_k"],
      [{ logprobs: 21 }, "logprobs"],
      [{ prompt: [1, 512] }, "prompt"],
      [{ prompt: [] }, "prompt"],
      [{ prompt: "text needs a tokenizer" }, "prompt"],
      [{ max_tokens: 2560 }, "max_tokens"],
      [{ max_tokens: 0 }, "max_tokens"],
      [{ stop: ["x"] }, "stop"],
      [{ stop_token_ids: [9999] }, "stop_token_ids"],
      [{ temperature: "hot" }, "temperature"],
      [{ n: 2 }, "n"],
    ];
    for (const [patch, param] of cases) {
      await assert.rejects(
        openai.completions.create({
          ...base,
          ...patch,
        } as unknown as OpenAI.CompletionCreateParamsNonStreaming),
        (e: unknown) => {
          assert.ok(e instanceof OpenAI.APIError, String(e));
          assert.equal(e.status, 400, `${JSON.stringify(patch)}: ${e.message}`);
          assert.equal(e.param, param, `${JSON.stringify(patch)}: ${e.message}`);
          assert.equal(e.type, "invalid_request_error");
          return true;
        },
      );
    }
    await assert.rejects(openai.completions.create({ ...base, model: "gpt-4" }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError);
      assert.equal(e.status, 404);
      assert.equal(e.param, "model");
      return true;
    });
    const raw = await fetch(`${cluster.httpUrl}/v1/completions`, { method: "POST", body: "{not json" });
    assert.equal(raw.status, 400);
    const body = (await raw.json()) as { error: { message: string; code: number } };
    assert.match(body.error.message, /not valid JSON/);
    // The same rules on gRPC: INVALID_ARGUMENT with the field in the details.
    await assert.rejects(
      async () => {
        for await (const _ of grpc.generate({
          prompt: { case: "tokenIds", value: { ids: [5] } },
          sampling: { temperature: 3 },
        }));
      },
      (e: unknown) =>
        e instanceof ExpertMeshError &&
        e.code === Code.INVALID_ARGUMENT &&
        e.details.field === "sampling.temperature",
    );
    await assert.rejects(
      async () => {
        for await (const _ of grpc.generate({ prompt: { case: "text", value: "hi" } }));
      },
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && e.details.field === "prompt",
    );
    // Nothing was left running by the failures.
    await nodeIdle();
  });

  it("refuses with 429 when the queue is full, then frees every KV block when the streams are cancelled", async () => {
    // ignore_eos is vLLM's extension (the openai client sends unknown fields as given).
    const long = {
      model: "tiny-v3",
      prompt: [68, 0, 408, 255, 511],
      max_tokens: 2000,
      temperature: 0,
      stream: true,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsStreaming;
    const controllers = [new AbortController(), new AbortController(), new AbortController()];
    // MAX_RUNNING streams run (their first chunk arrived, so they were admitted)…
    const running = await Promise.all(
      controllers.slice(0, MAX_RUNNING).map((c) => openai.completions.create(long, { signal: c.signal })),
    );
    const firsts = await Promise.all(
      running.map(async (s) => {
        const r = await s[Symbol.asyncIterator]().next();
        return r.done === true ? undefined : r.value;
      }),
    );
    assert.ok(firsts.every((c) => c !== undefined && c.choices[0]!.finish_reason === null));
    // …one more waits in the router's queue (EXPERTMESH_MAX_QUEUED_REQUESTS=1)…
    const queued = openai.completions.create(long, { signal: controllers[2]!.signal });
    queued.catch(() => undefined);
    await waitUntil(
      async () =>
        (await scrapeMetrics(`${cluster.httpUrl}/metrics`)).get("expertmesh_num_requests_waiting") === 1,
      {
        what: "one request queued",
        timeoutMs: 10_000,
      },
    );
    // …and the next one is refused at once.
    await assert.rejects(openai.completions.create({ ...long, stream: false }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError);
      assert.equal(e.status, 429);
      assert.equal(e.type, "rate_limit_error");
      return true;
    });
    const busy = await cluster.attention.getLoad({});
    assert.equal(busy.running + busy.waiting, MAX_RUNNING);
    assert.ok(busy.freeKvBlocks < busy.totalKvBlocks);
    for (const c of controllers) c.abort();
    await nodeIdle();
    const metrics = await scrapeMetrics(`${cluster.httpUrl}/metrics`);
    assert.equal(metrics.get("expertmesh_num_requests_running"), 0);
    assert.equal(metrics.get("expertmesh_num_requests_waiting"), 0);
    assert.ok((metrics.get('expertmesh_request_failure_total{code="RESOURCE_EXHAUSTED"}') ?? 0) >= 1);
  });

  it("cancelling a gRPC Generate mid-stream aborts the sequence on the node (KV blocks freed)", async () => {
    const controller = new AbortController();
    const stream = grpc.generate(
      {
        prompt: { case: "tokenIds", value: { ids: [68, 0, 408, 255, 511] } },
        sampling: { maxTokens: 2000, ignoreEos: true },
      },
      { signal: controller.signal },
    );
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.done, false);
    const busy = await cluster.attention.getLoad({});
    assert.equal(busy.running, 1);
    controller.abort();
    await assert.rejects(
      async () => {
        for (;;) if ((await it.next()).done === true) break;
      },
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.CANCELLED,
    );
    await nodeIdle();
  });

  it("honours a gRPC deadline: DEADLINE_EXCEEDED and the sequence is freed", async () => {
    await assert.rejects(
      async () => {
        for await (const _ of grpc.generate(
          {
            prompt: { case: "tokenIds", value: { ids: [68, 0, 408] } },
            sampling: { maxTokens: 2000, ignoreEos: true },
          },
          { timeoutMs: 300 },
        ));
      },
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.DEADLINE_EXCEEDED,
    );
    await nodeIdle();
  });

  it("reports the cluster: model, the attention node with its load", async () => {
    const state = await grpc.getClusterState({});
    assert.equal(state.model?.name, "tiny-v3");
    assert.equal(state.model?.vocabSize, 512);
    assert.equal(state.model?.maxContextLength, 2560);
    assert.equal(state.model?.nRoutedExperts, 256);
    assert.equal(state.attentionNodes.length, 1);
    const node = state.attentionNodes[0]!;
    assert.deepEqual(
      [node.id, node.address, node.status],
      ["a0", cluster.attentionAddress, MemberStatus.SERVING],
    );
    assert.ok(node.totalKvBlocks > 0);
  });

  it("answers gRPC health and reflection (independent Python client)", async (t) => {
    const run = promisify(execFile);
    const python = "/usr/bin/python3";
    try {
      await run(python, ["-c", "import grpc, google.protobuf"], { timeout: 20_000 });
    } catch {
      t.skip(`${python} with grpcio and protobuf is not installed`);
      return;
    }
    const probe = `${REPO_ROOT}/packages/shared/tests/grpc_probe.py`;
    const { stdout } = await run(
      python,
      [probe, cluster.grpcAddress, "expertmesh.v1.InferenceService", "expertmesh.v1.InferenceService"],
      {
        timeout: 30_000,
      },
    );
    const result = JSON.parse(stdout) as {
      health: Record<string, number>;
      reflection: Record<string, { services?: string[]; errors?: unknown[] }>;
    };
    assert.deepEqual(result.health, { "": 1, "expertmesh.v1.InferenceService": 1 });
    for (const version of ["v1alpha", "v1"]) {
      assert.equal(result.reflection[version]?.errors, undefined);
      assert.ok(result.reflection[version]?.services?.includes("expertmesh.v1.InferenceService"));
      assert.ok(result.reflection[version]?.services?.includes("grpc.health.v1.Health"));
    }
  });

  it("exports vLLM-style metrics", async () => {
    const m = await scrapeMetrics(`${cluster.httpUrl}/metrics`);
    assert.ok((m.get('expertmesh_request_success_total{finished_reason="length"}') ?? 0) >= 4);
    assert.ok((m.get('expertmesh_request_success_total{finished_reason="stop"}') ?? 0) >= 1);
    assert.ok((m.get("expertmesh_generation_tokens_total") ?? 0) >= 33);
    assert.ok((m.get("expertmesh_prompt_tokens_total") ?? 0) >= 62);
    assert.ok((m.get("expertmesh_time_to_first_token_seconds_count") ?? 0) >= 4);
    assert.ok((m.get("expertmesh_time_per_output_token_seconds_count") ?? 0) >= 4);
    assert.ok((m.get("expertmesh_e2e_request_latency_seconds_count") ?? 0) >= 4);
    assert.ok((m.get('expertmesh_request_failure_total{code="INVALID_ARGUMENT"}') ?? 0) >= 10);
    assert.equal(m.get('expertmesh_attention_node_up{node="a0"}'), 1);
  });
});
