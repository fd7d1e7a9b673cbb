/**
 * The router when its peers or itself go away (real processes, tiny-v3): an attention node that
 * dies fails its running requests with UNAVAILABLE at once (never a hang), new requests get 503
 * while no node serves, and the router picks the node up again when it comes back; a node that
 * drains gets no new requests but finishes its running ones. On SIGTERM
 * the router stops taking requests, finishes the running ones, and exits 0.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { InferenceService, MemberStatus } from "@expertmesh/proto";
import { Code, ExpertMeshError, createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient } from "@expertmesh/shared";
import { waitUntil } from "@expertmesh/shared/testing";
import { TINY_V3, scrapeMetrics, startRouterCluster } from "./router-cluster.ts";
import type { RouterCluster } from "./router-cluster.ts";

const PROMPT = [68, 0, 408, 255, 511];
const GREEDY = [318, 185, 293, 286, 362, 55, 398, 82];

describe("router failover and drain (tiny-v3)", { timeout: 150_000 }, () => {
  let cluster: RouterCluster;
  let openai: OpenAI;
  let channel: GrpcChannel;
  let grpc: GrpcClient<typeof InferenceService>;

  before(async () => {
    cluster = await startRouterCluster({ modelDir: TINY_V3 });
    openai = new OpenAI({ baseURL: `${cluster.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    channel = createGrpcChannel(cluster.grpcAddress);
    grpc = createGrpcClient(InferenceService, channel);
  });
  after(async () => {
    channel?.close();
    await cluster?.stop();
  });

  const greedyIds = async (): Promise<number[]> => {
    const r = await openai.completions.create({
      model: "tiny-v3",
      prompt: PROMPT,
      max_tokens: 8,
      temperature: 0,
      ...{ return_token_ids: true },
    });
    return (r.choices[0] as unknown as { token_ids: number[] }).token_ids;
  };

  it("fails running requests with UNAVAILABLE when their attention node dies, and recovers when it returns", async () => {
    assert.deepEqual(await greedyIds(), GREEDY);
    const stream = grpc.generate({
      prompt: { case: "tokenIds", value: { ids: PROMPT } },
      sampling: { maxTokens: 2000, ignoreEos: true },
    });
    const it = stream[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);

    const killedAt = Date.now();
    await cluster.killAttention();
    await assert.rejects(
      async () => {
        for (;;) if ((await it.next()).done === true) break;
      },
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.UNAVAILABLE && /attention node a0/.test(e.message),
    );
    assert.ok(Date.now() - killedAt < 10_000, "the failure arrives promptly");

    // No node serves: 503 at once, the cluster state and metrics say so.
    await waitUntil(
      async () => (await grpc.getClusterState({})).attentionNodes[0]?.status === MemberStatus.UNAVAILABLE,
      {
        what: "a0 reported unavailable",
        timeoutMs: 10_000,
      },
    );
    await assert.rejects(greedyIds(), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503);
    assert.equal(
      (await scrapeMetrics(`${cluster.httpUrl}/metrics`)).get('expertmesh_attention_node_up{node="a0"}'),
      0,
    );

    await cluster.restartAttention();
    await waitUntil(
      async () => (await grpc.getClusterState({})).attentionNodes[0]?.status === MemberStatus.SERVING,
      {
        what: "a0 serving again",
        timeoutMs: 20_000,
      },
    );
    assert.deepEqual(await greedyIds(), GREEDY);
  });

  it("stops sending to a draining attention node; its running requests still finish", async () => {
    const stream = grpc.generate({
      prompt: { case: "tokenIds", value: { ids: PROMPT } },
      sampling: { maxTokens: 300, ignoreEos: true },
    });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.done, false);
    let tokens = first.value?.tokenIds.length ?? 0;

    const stopped = cluster.killAttention("SIGTERM");
    await waitUntil(
      async () => (await grpc.getClusterState({})).attentionNodes[0]?.status === MemberStatus.DRAINING,
      { what: "a0 reported draining", timeoutMs: 10_000 },
    );
    await assert.rejects(greedyIds(), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503);
    for (;;) {
      const next = await it.next();
      if (next.done === true) break;
      tokens += next.value.tokenIds.length;
    }
    assert.equal(tokens, 300, "the running request finished on the draining node");
    await stopped;

    await cluster.restartAttention();
    await waitUntil(
      async () => (await grpc.getClusterState({})).attentionNodes[0]?.status === MemberStatus.SERVING,
      { what: "a0 serving again", timeoutMs: 20_000 },
    );
    assert.deepEqual(await greedyIds(), GREEDY);
  });

  it("drains on SIGTERM: running requests finish, new ones are refused, exit 0", async () => {
    const stream = grpc.generate({
      prompt: { case: "tokenIds", value: { ids: PROMPT } },
      sampling: { maxTokens: 150, ignoreEos: true },
    });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.done, false);
    let tokens = first.value?.tokenIds.length ?? 0;

    cluster.router.kill("SIGTERM");
    await waitUntil(async () => (await fetch(`${cluster.httpUrl}/readyz`)).status === 503, {
      what: "router not ready",
      timeoutMs: 5_000,
    });
    await assert.rejects(greedyIds(), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503);

    let last;
    for (;;) {
      const next = await it.next();
      if (next.done === true) break;
      tokens += next.value.tokenIds.length;
      last = next.value;
    }
    assert.equal(tokens, 150, "the running request finished");
    assert.equal(last?.usage?.completionTokens, 150);
    assert.deepEqual(await cluster.router.exited, { code: 0, signal: null });
    const load = await cluster.attention.getLoad({});
    assert.equal(load.freeKvBlocks, load.totalKvBlocks);
  });
});
