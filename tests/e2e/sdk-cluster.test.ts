/**
 * The client SDK against a real cluster started by `expertmesh up` (Redis, 2 expert-workers on
 * 1 node, 1 attention node, the router): greedy streaming gives golden.json's tokens chunk by
 * chunk; aborting mid-stream fails the loop with CANCELLED and the attention node frees every KV
 * block; each bad request reaches the SDK user as its status code, and does not disturb a good
 * generation running beside it. The fixture has no tokenizer, so prompts are token ids.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ExpertMeshError, createExpertMeshClient } from "@expertmesh/client";
import type { ClientCallOptions, ExpertMeshClient, GenerateChunk, GenerateRequest } from "@expertmesh/client";
import { AttentionService } from "@expertmesh/proto";
import type { GetLoadResponse } from "@expertmesh/proto";
import { createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel } from "@expertmesh/shared";
import { liveGroupMembers, waitUntil } from "@expertmesh/shared/testing";
import type { ServiceProcess } from "@expertmesh/shared/testing";
import { TINY_V3, expertmesh, goldenGreedy, readPrompts } from "./helpers/cluster-harness.ts";

interface StateMember {
  name: string;
  role: "redis" | "expert-worker" | "attention" | "router";
  pid: number;
  address: string;
}

const config = JSON.parse(readFileSync(join(TINY_V3, "config.json"), "utf8")) as {
  vocab_size: number;
  max_position_embeddings: number;
};
const PROMPT = readPrompts(TINY_V3).find((p) => p.name === "len5")!.tokens;
const GOLDEN = goldenGreedy(TINY_V3).get("len5")!;

/** Every chunk of one generation (a synchronous throw from `generate` becomes a rejection). */
async function collect(
  client: ExpertMeshClient,
  request: GenerateRequest,
  options?: ClientCallOptions,
): Promise<GenerateChunk[]> {
  const chunks: GenerateChunk[] = [];
  for await (const chunk of client.generate(request, options)) chunks.push(chunk);
  return chunks;
}

/** An assert.rejects matcher: an ExpertMeshError with `code` (and `field` in its details, if given). */
function failsWith(code: Code, field?: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof ExpertMeshError, `an ExpertMeshError, got ${String(e)}`);
    assert.equal(Code[e.code], Code[code], e.message);
    if (field !== undefined) {
      assert.equal(e.details.field, field, e.message);
      assert.ok(e.message.includes(field), `message names ${field}: ${e.message}`);
    }
    return true;
  };
}

describe("client SDK against `expertmesh up` (1 attention node, 2 workers on 1 node, router)", () => {
  let tmp: string;
  let up: ServiceProcess;
  let members: StateMember[];
  let client: ExpertMeshClient;
  let channel: GrpcChannel;
  let getLoad: () => Promise<GetLoadResponse>;

  /** Every KV block of the attention node free and nothing running: no sequence leaked. */
  const allFreed = async (): Promise<GetLoadResponse> =>
    waitUntil(
      async () => {
        const load = await getLoad();
        return load.running === 0 && load.waiting === 0 && load.freeKvBlocks === load.totalKvBlocks
          ? load
          : undefined;
      },
      { timeoutMs: 10_000, what: "the attention node to free every KV block" },
    );

  /** `bad` alongside a good greedy generation, whose tokens must still be golden's. */
  const besideGoodOne = async (bad: () => Promise<void>): Promise<void> => {
    const good = collect(client, { prompt: PROMPT, maxTokens: GOLDEN.length, temperature: 0 });
    await bad();
    const chunks = await good;
    assert.deepEqual(
      chunks.flatMap((c) => c.tokenIds),
      GOLDEN,
      "the concurrent good generation",
    );
    assert.equal(chunks.at(-1)?.finishReason, "length");
  };

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "expertmesh-e2e-sdk-"));
    const stateFile = join(tmp, "cluster.json");
    up = expertmesh([
      "up",
      "--model",
      TINY_V3,
      "--attention",
      "1",
      "--workers",
      "2",
      "--nodes",
      "1",
      "--log-level",
      "warn",
      "--state-file",
      stateFile,
    ]);
    const router = await up.waitForLine(/^router: grpc=(\S+) http=/, 60_000);
    await up.waitForLine(/^cluster ready: 1 attention, 2 workers on 1 node/, 60_000);
    members = (JSON.parse(readFileSync(stateFile, "utf8")) as { members: StateMember[] }).members;
    const routerMember = members.find((m) => m.role === "router");
    assert.equal(routerMember?.name, "router");
    // The state file's router address is the gRPC address `up` printed.
    assert.equal(routerMember.address, router[1]);
    const attention = members.filter((m) => m.role === "attention");
    assert.equal(attention.length, 1);
    client = createExpertMeshClient({ address: routerMember.address, defaultTimeoutMs: 30_000 });
    channel = createGrpcChannel(attention[0]!.address);
    const attentionService = createGrpcClient(AttentionService, channel);
    getLoad = () => attentionService.getLoad({}, { timeoutMs: 5_000 });
  });

  after(async () => {
    client?.close();
    channel?.close();
    await up?.stop({ timeoutMs: 30_000 });
    await rm(tmp, { recursive: true, force: true });
    for (const m of members ?? [])
      assert.deepEqual(liveGroupMembers(m.pid), [], `${m.name} (pid ${m.pid}) left processes behind`);
    if (up !== undefined) assert.deepEqual(liveGroupMembers(up.pid), []);
  });

  it("streams golden greedy tokens chunk by chunk (temperature 0)", async () => {
    const chunks = await collect(client, { prompt: PROMPT, maxTokens: 8, temperature: 0 });
    assert.deepEqual(
      chunks.flatMap((c) => c.tokenIds),
      GOLDEN,
    );
    // Streamed, not delivered whole: the tokens came in more than one chunk.
    assert.ok(
      chunks.filter((c) => c.tokenIds.length > 0).length > 1,
      `tokens per chunk: ${chunks.map((c) => c.tokenIds.length).join(",")}`,
    );
    // Only the final chunk says how the generation ended.
    assert.ok(chunks.slice(0, -1).every((c) => c.finishReason === undefined));
    const last = chunks.at(-1)!;
    assert.equal(last.finishReason, "length");
    assert.deepEqual(last.usage, { promptTokens: PROMPT.length, completionTokens: 8 });
    assert.ok(chunks.every((c) => c.requestId === chunks[0]!.requestId && c.requestId !== ""));
  });

  it("an abort after the first chunk ends the loop with CANCELLED and frees the KV blocks", async () => {
    const idle = await allFreed();
    const controller = new AbortController();
    const stream = client.generate(
      { prompt: PROMPT, maxTokens: 400, temperature: 0, ignoreEos: true },
      { signal: controller.signal },
    );
    const received: number[] = [];
    await assert.rejects(async () => {
      for await (const chunk of stream) {
        received.push(...chunk.tokenIds);
        if (!controller.signal.aborted) {
          // The sequence is live on the attention node and holds KV blocks.
          const load = await getLoad();
          assert.equal(load.running + load.waiting, 1);
          assert.ok(load.freeKvBlocks < load.totalKvBlocks, "a running sequence holds KV blocks");
          controller.abort();
        }
      }
    }, failsWith(Code.CANCELLED));
    assert.ok(received.length >= 1 && received.length < 400, `${received.length} tokens before the abort`);
    assert.deepEqual(received.slice(0, GOLDEN.length), GOLDEN.slice(0, received.length));
    const load = await allFreed();
    assert.equal(load.totalKvBlocks, idle.totalKvBlocks);
  });

  it("an empty prompt is INVALID_ARGUMENT", async () => {
    await besideGoodOne(() =>
      assert.rejects(
        collect(client, { prompt: [], maxTokens: 8 }),
        failsWith(Code.INVALID_ARGUMENT, "prompt"),
      ),
    );
  });

  it("a token id outside the vocabulary is INVALID_ARGUMENT naming the prompt", async () => {
    await besideGoodOne(async () => {
      await assert.rejects(
        collect(client, { prompt: [...PROMPT, config.vocab_size], maxTokens: 8 }),
        (e: unknown) =>
          failsWith(Code.INVALID_ARGUMENT, "prompt")(e) &&
          (e as Error).message.includes(`token id ${config.vocab_size}`),
      );
      // A negative id cannot be sent as a uint32: the SDK refuses it itself, with the same code.
      await assert.rejects(
        collect(client, { prompt: [1, -5] }),
        failsWith(Code.INVALID_ARGUMENT, "request.prompt"),
      );
    });
  });

  it("prompt + max_tokens beyond the context is INVALID_ARGUMENT", async () => {
    const room = config.max_position_embeddings - PROMPT.length;
    await besideGoodOne(() =>
      assert.rejects(
        collect(client, { prompt: PROMPT, maxTokens: room + 1 }),
        (e: unknown) =>
          failsWith(Code.INVALID_ARGUMENT, "sampling.max_tokens")(e) &&
          (e as Error).message.includes(`context of ${config.max_position_embeddings} tokens`),
      ),
    );
  });

  it("a negative temperature is INVALID_ARGUMENT", async () => {
    await besideGoodOne(() =>
      assert.rejects(
        collect(client, { prompt: PROMPT, maxTokens: 8, temperature: -0.5 }),
        failsWith(Code.INVALID_ARGUMENT, "sampling.temperature"),
      ),
    );
  });

  it("top_logprobs above 20 is INVALID_ARGUMENT", async () => {
    await besideGoodOne(() =>
      assert.rejects(
        collect(client, { prompt: PROMPT, maxTokens: 8, topLogprobs: 21 }),
        failsWith(Code.INVALID_ARGUMENT, "top_logprobs"),
      ),
    );
  });

  it("a deadline too short for the generation is DEADLINE_EXCEEDED", async () => {
    await besideGoodOne(() =>
      assert.rejects(
        collect(client, { prompt: PROMPT, maxTokens: 400, ignoreEos: true }, { timeoutMs: 1 }),
        failsWith(Code.DEADLINE_EXCEEDED),
      ),
    );
    await allFreed();
  });

  it("a deadline passing mid-stream is DEADLINE_EXCEEDED, and the cluster stops the generation", async () => {
    const maxTokens = config.max_position_embeddings - PROMPT.length;
    const received: number[] = [];
    let sawRunning = false;
    await assert.rejects(async () => {
      for await (const chunk of client.generate(
        { prompt: PROMPT, maxTokens, temperature: 0, ignoreEos: true },
        { timeoutMs: 2_000 },
      )) {
        received.push(...chunk.tokenIds);
        if (!sawRunning) sawRunning = (await getLoad()).running === 1;
      }
    }, failsWith(Code.DEADLINE_EXCEEDED));
    assert.ok(sawRunning, "the generation was running on the attention node");
    assert.ok(
      received.length >= 1 && received.length < maxTokens,
      `${received.length} tokens before the deadline`,
    );
    await allFreed();
  });
});
