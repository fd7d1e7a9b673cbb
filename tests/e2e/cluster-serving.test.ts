/**
 * The whole serving path on real processes, started by `expertmesh up`: Redis, 4 expert-workers
 * on 2 nodes and 2 attention nodes (float32 wire). Concurrent sequences over
 * AttentionService.Serve on both attention nodes get the single-process engine's greedy tokens;
 * the attention nodes read no routed-expert tensor; the workers' load windows in Redis add up to
 * tokens × experts per token × MoE layers; every token reached ≤ topk_group nodes (/metrics);
 * a placement breaking the node limit is refused; SIGTERM to the launcher stops everything.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Engine, EngineCore } from "@expertmesh/engine";
import { loadModel } from "@expertmesh/model";
import { Placement, PlacementStore, parseLoadField } from "@expertmesh/placement";
import { AttentionService, FinishReason } from "@expertmesh/proto";
import type { ServeResponse } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel } from "@expertmesh/shared";
import { liveGroupMembers, waitUntil } from "@expertmesh/shared/testing";
import type { ServiceProcess } from "@expertmesh/shared/testing";
import { Redis } from "ioredis";
import {
  TINY_V3,
  compareGolden,
  expertmesh,
  fixtureShape,
  goldenGreedy,
  readPrompts,
  sample,
  scrapeMetrics,
} from "./helpers/cluster-harness.ts";

interface StateMember {
  name: string;
  role: "redis" | "expert-worker" | "attention";
  pid: number;
  address: string;
  metricsPort: number | null;
}
interface State {
  redisUrl: string;
  placementVersion: number;
  members: StateMember[];
}

/** One sequence sent to an attention node. */
interface Job {
  node: "a0" | "a1";
  stream: number;
  sequenceId: number;
  prompt: readonly number[];
  maxTokens: number;
  logprobs?: boolean;
}

const shape = fixtureShape(TINY_V3);
const prompts = readPrompts(TINY_V3);
const byName = new Map(prompts.map((p) => [p.name, p]));
const P = (name: string): readonly number[] => byName.get(name)!.tokens;
const EXTRA = Array.from({ length: 30 }, (_, i) => 2 + ((i * 37 + 11) % 500));
const JOBS: readonly Job[] = [
  { node: "a0", stream: 0, sequenceId: 1, prompt: P("len5"), maxTokens: 8 },
  { node: "a0", stream: 0, sequenceId: 2, prompt: P("len17"), maxTokens: 8 },
  { node: "a0", stream: 0, sequenceId: 3, prompt: P("len40"), maxTokens: 8, logprobs: true },
  { node: "a0", stream: 1, sequenceId: 1, prompt: P("len17"), maxTokens: 8 },
  { node: "a1", stream: 0, sequenceId: 10, prompt: P("len40"), maxTokens: 8 },
  { node: "a1", stream: 0, sequenceId: 11, prompt: P("len5"), maxTokens: 8 },
  { node: "a1", stream: 0, sequenceId: 12, prompt: EXTRA, maxTokens: 12 },
];
/** Tokens run through the model per sequence: the prompt, then every generated token but the last. */
const FORWARD_TOKENS = JOBS.reduce((n, j) => n + j.prompt.length + j.maxTokens - 1, 0);

describe("expertmesh up: 2 attention nodes + 4 expert-workers on 2 nodes + Redis, float32 wire", () => {
  let tmp: string;
  let stateFile: string;
  let up: ServiceProcess;
  let state: State;
  const channels: GrpcChannel[] = [];
  const member = (name: string): StateMember => state.members.find((m) => m.name === name)!;
  const metricsOf = (name: string): string => `http://127.0.0.1:${member(name).metricsPort}/metrics`;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "expertmesh-e2e-serving-"));
    stateFile = join(tmp, "cluster.json");
    up = expertmesh([
      "up",
      "--model",
      TINY_V3,
      "--attention",
      "2",
      "--workers",
      "4",
      "--nodes",
      "2",
      "--wire",
      "float32",
      "--load-window",
      "250ms",
      "--log-level",
      "warn",
      "--state-file",
      stateFile,
    ]);
    await up.waitForLine(/^cluster ready: 2 attention, 4 workers on 2 nodes/, 150_000);
    state = JSON.parse(readFileSync(stateFile, "utf8")) as State;
  });
  after(async () => {
    for (const c of channels) c.close();
    await up?.stop({ timeoutMs: 30_000 });
    await rm(tmp, { recursive: true, force: true });
  });

  it("prints where everything listens and streams each process's log lines with its name", () => {
    assert.deepEqual(
      state.members.map((m) => `${m.name}:${m.role}`),
      [
        "redis:redis",
        "w0:expert-worker",
        "w1:expert-worker",
        "w2:expert-worker",
        "w3:expert-worker",
        "a0:attention",
        "a1:attention",
        "router:router",
      ],
    );
    const text = up.output();
    assert.match(text, /router: grpc=\S+ http=http:\/\/\S+ \(OpenAI API: http:\/\/\S+\/v1\)/);
    for (const m of state.members.filter((x) => x.role !== "redis")) {
      assert.match(
        text,
        new RegExp(
          `\\[${m.name}\\] ((attention|expert-worker) ${m.name} listening on |router listening grpc=)`,
        ),
      );
      assert.ok(text.includes(m.address), `table lists ${m.address}`);
    }
  });

  it("serves concurrent sequences on both attention nodes with the single-process engine's greedy tokens", async () => {
    // Reference: the same requests through the single-process engine (routed experts local).
    const model = await loadModel(TINY_V3, { threads: 1 });
    const reference = new Map<Job, number[]>();
    try {
      const engine = new Engine(new EngineCore(model, { numKvBlocks: 256, blockSize: 16 }));
      await Promise.all(
        JOBS.map(async (job) => {
          const tokens: number[] = [];
          for await (const out of engine.generate({
            promptTokenIds: job.prompt,
            sampling: { temperature: 0, maxTokens: job.maxTokens, ignoreEos: true },
          })) {
            tokens.push(...out.newTokenIds);
          }
          reference.set(job, tokens);
        }),
      );
      await engine.close();
    } finally {
      await model.release();
    }
    // The fixture prompts' references are golden.json's greedy tokens too.
    const golden = goldenGreedy(TINY_V3);
    for (const job of JOBS.filter((j) => j.prompt !== EXTRA)) {
      const name = prompts.find((p) => p.tokens === job.prompt)!.name;
      assert.deepEqual(reference.get(job), golden.get(name), `engine reference of ${name} is golden's`);
    }

    // One stream per (node, stream) with all its sequences at once; every stream runs concurrently.
    const streams = new Map<string, Job[]>();
    for (const job of JOBS)
      streams.set(`${job.node}/${job.stream}`, [...(streams.get(`${job.node}/${job.stream}`) ?? []), job]);
    const results = await Promise.all(
      [...streams.values()].map(async (jobs) => {
        const channel = createGrpcChannel(member(jobs[0]!.node).address);
        channels.push(channel);
        const stream = createGrpcClient(AttentionService, channel).serve({ timeoutMs: 60_000 });
        for (const job of jobs) {
          stream.send({
            command: {
              case: "addSequence",
              value: {
                sequenceId: job.sequenceId,
                requestId: `e2e-${job.node}-${job.sequenceId}`,
                promptTokenIds: [...job.prompt],
                sampling: { maxTokens: job.maxTokens, ignoreEos: true },
                logprobs: job.logprobs === true,
              },
            },
          });
        }
        stream.end();
        const responses: ServeResponse[] = [];
        for await (const r of stream) responses.push(r);
        return { jobs, responses };
      }),
    );
    for (const { jobs, responses } of results) {
      for (const job of jobs) {
        const tokens = responses.flatMap((r) =>
          r.tokenIds.filter((_, i) => r.sequenceIds[i] === job.sequenceId),
        );
        assert.deepEqual(tokens, reference.get(job), `${job.node} sequence ${job.sequenceId}`);
        const finish = responses.flatMap((r) => r.finishes).find((f) => f.sequenceId === job.sequenceId);
        assert.equal(finish?.finishReason, FinishReason.LENGTH);
        assert.deepEqual(
          [finish?.usage?.promptTokens, finish?.usage?.completionTokens],
          [job.prompt.length, job.maxTokens],
        );
        if (job.logprobs === true) {
          const lps = responses.flatMap((r) =>
            r.logprobs.filter((_, i) => r.sequenceIds[i] === job.sequenceId),
          );
          assert.equal(lps.length, job.maxTokens);
          assert.ok(lps.every((lp) => lp <= 0 && lp > -50));
        }
      }
    }
    for (const node of ["a0", "a1"]) {
      const channel = createGrpcChannel(member(node).address);
      channels.push(channel);
      const load = await createGrpcClient(AttentionService, channel).getLoad({});
      assert.equal(load.running, 0);
      assert.equal(load.freeKvBlocks, load.totalKvBlocks, `${node} freed every KV block`);
    }
  });

  it("the attention nodes read no routed-expert tensor and every token reached ≤ topk_group nodes (/metrics)", async () => {
    let observed = 0;
    for (const node of ["a0", "a1"]) {
      const m = await scrapeMetrics(metricsOf(node));
      assert.equal(
        sample(m, "expertmesh_attention_checkpoint_tensors_read", { kind: "routed_expert" }),
        0,
        `${node} read routed experts`,
      );
      assert.ok(sample(m, "expertmesh_attention_checkpoint_tensors_read", { kind: "other" }) > 0);
      const count = sample(m, "expertmesh_attention_nodes_per_token_count");
      assert.equal(
        sample(m, "expertmesh_attention_nodes_per_token_bucket", { le: String(shape.topkGroup) }),
        count,
        `${node}: a token reached > topk_group nodes`,
      );
      assert.equal(sample(m, "expertmesh_attention_node_limit_exceeded_total"), 0);
      assert.ok(count > 0, `${node} served tokens`);
      observed += count;
    }
    // One observation per token per MoE layer, over both nodes.
    assert.equal(observed, FORWARD_TOKENS * shape.moeLayers.length);
  });

  it("the workers' load windows in Redis add up to tokens × experts per token × MoE layers", async () => {
    const redis = new Redis(state.redisUrl);
    try {
      const expected = FORWARD_TOKENS * shape.topK * shape.moeLayers.length;
      const total = async (): Promise<number> => {
        let sum = 0;
        for (const key of await redis.keys("expertmesh:{default}:load:*")) {
          for (const [field, value] of Object.entries(await redis.hgetall(key))) {
            const f = parseLoadField(field);
            assert.ok(
              f !== undefined && f.placementVersion === state.placementVersion,
              `load field ${field}`,
            );
            assert.ok(shape.moeLayers.includes(f.modelLayer));
            sum += Number(value);
          }
        }
        return sum;
      };
      // Workers flush once per 250 ms window: wait for the last window to land.
      await waitUntil(async () => (await total()) >= expected, {
        timeoutMs: 15_000,
        what: `${expected} rows of load in Redis`,
      });
      assert.equal(await total(), expected);
    } finally {
      await redis.quit();
    }
  });

  it("publishing a placement that breaks the node limit is refused; the current placement stays", async () => {
    const redis = new Redis(state.redisUrl);
    try {
      const store = new PlacementStore(redis);
      const workers = Array.from({ length: 8 }, (_, i) => ({ workerId: `w${i}`, node: `n${i}` }));
      const E = shape.nRoutedExperts;
      const L = shape.moeLayers.length;
      // Experts dealt round-robin over 8 nodes: every group spans all of them, so 4 groups reach 8 > 4 nodes.
      const bad = new Placement({
        version: state.placementVersion + 1,
        shape: {
          moeLayers: shape.moeLayers,
          nRoutedExperts: E,
          nGroup: shape.nGroup,
          topkGroup: shape.topkGroup,
        },
        workers,
        numPhysical: E,
        physicalToLogical: Int32Array.from({ length: L * E }, (_, i) => i % E),
        physicalToWorker: Int32Array.from({ length: L * E }, (_, i) => i % 8),
      });
      await assert.rejects(
        store.publish(bad),
        (e: unknown) =>
          e instanceof ExpertMeshError &&
          e.code === Code.FAILED_PRECONDITION &&
          /more than topk_group = 4/.test(e.message),
      );
      assert.equal(await store.currentVersion(), state.placementVersion);
    } finally {
      await redis.quit();
    }
  });

  it("`expertmesh inspect-cluster --state-file` over the running cluster's workers passes compare_golden", async () => {
    const out = join(tmp, "inspect.json");
    const cli = expertmesh([
      "inspect-cluster",
      "--model",
      TINY_V3,
      "--prompts",
      join(TINY_V3, "prompts.json"),
      "--out",
      out,
      "--state-file",
      stateFile,
    ]);
    const exit = await cli.exited;
    assert.equal(exit.code, 0, cli.output());
    const result = await compareGolden(join(TINY_V3, "golden.json"), out);
    assert.equal(result.failed, 0, result.output);
  });

  it("SIGTERM to the launcher stops every process group and removes the state file", async () => {
    up.kill("SIGTERM");
    const exit = await up.exited;
    assert.equal(exit.code, 0, up.output());
    assert.match(up.output(), /SIGTERM: stopping the cluster/);
    // Attention nodes drained, workers flushed, Redis shut down: all exit 0.
    assert.match(up.output(), /cluster stopped: every process exited cleanly/);
    for (const m of state.members)
      assert.deepEqual(liveGroupMembers(m.pid), [], `${m.name} (pid ${m.pid}) left processes behind`);
    assert.deepEqual(liveGroupMembers(up.pid), []);
    await assert.rejects(access(stateFile));
  });
});
