/**
 * The router end to end with text: a synthetic tiny checkpoint with a real byte-level BPE
 * tokenizer, behind a real expert-worker, attention node and router, and an API key. The
 * official `openai` client gets completions (text prompt, stop strings) and streamed chat
 * completions with logprobs; gRPC Generate returns text; a wrong key is 401.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { writeSyntheticCheckpoint } from "@expertmesh/model";
import { InferenceService } from "@expertmesh/proto";
import { createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import type { GrpcChannel, GrpcClient } from "@expertmesh/shared";
import { requireTokenizer } from "@expertmesh/tokenizer";
import type { TextTokenizer } from "@expertmesh/tokenizer";
import { renderChatPrompt } from "../src/core/chat-template.ts";
import { startRouterCluster } from "./router-cluster.ts";
import type { RouterCluster } from "./router-cluster.ts";

const MODEL = "synthetic-tiny";
const API_KEY = "test-key-123";

describe("router with a tokenizer (synthetic tiny checkpoint)", { timeout: 120_000 }, () => {
  let dir: string;
  let cluster: RouterCluster;
  let openai: OpenAI;
  let tokenizer: TextTokenizer;
  let channel: GrpcChannel;
  let grpc: GrpcClient<typeof InferenceService>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "router-text-"));
    await writeSyntheticCheckpoint({ preset: "tiny", seed: 7, outDir: dir });
    tokenizer = await requireTokenizer(dir);
    cluster = await startRouterCluster({
      modelDir: dir,
      routerEnv: { EXPERTMESH_MODEL_NAME: MODEL, EXPERTMESH_API_KEY: API_KEY },
    });
    openai = new OpenAI({ baseURL: `${cluster.httpUrl}/v1`, apiKey: API_KEY, maxRetries: 0 });
    channel = createGrpcChannel(cluster.grpcAddress);
    grpc = createGrpcClient(InferenceService, channel);
  });
  after(async () => {
    channel?.close();
    await cluster?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("completes a text prompt: the text is the detokenized token ids, usage counts the BOS", async () => {
    const prompt = "The quick brown fox";
    const r = await openai.completions.create({
      model: MODEL,
      prompt,
      max_tokens: 12,
      temperature: 0,
      ...{ ignore_eos: true, return_token_ids: true },
    });
    const choice = r.choices[0]!;
    const ids = (choice as unknown as { token_ids: number[] }).token_ids;
    assert.equal(ids.length, 12);
    assert.equal(choice.finish_reason, "length");
    assert.equal(choice.text, tokenizer.decode(ids));
    assert.deepEqual(r.usage, {
      prompt_tokens: 1 + tokenizer.encode(prompt).length,
      completion_tokens: 12,
      total_tokens: 1 + tokenizer.encode(prompt).length + 12,
    });
  });

  it("stops at a stop string: the text before it, finish reason stop", async () => {
    const base = {
      model: MODEL,
      prompt: "Attention, experts, tokens",
      max_tokens: 24,
      temperature: 0,
      ...{ ignore_eos: true },
    };
    const full = (await openai.completions.create(base)).choices[0]!.text;
    // A stop string from the middle of the greedy text (greedy: the same text comes again).
    const stop = [...full].slice(6, 8).join("");
    assert.ok(stop.length > 0 && !stop.includes("\uFFFD"), `usable greedy text: ${JSON.stringify(full)}`);
    const r = await openai.completions.create({ ...base, stop: [stop] });
    assert.equal(r.choices[0]!.finish_reason, "stop");
    assert.equal(r.choices[0]!.text, full.slice(0, full.indexOf(stop)));
    assert.ok(r.usage!.completion_tokens < 24);
  });

  it("streams a chat completion: role first, content deltas, finish reason, usage, [DONE]", async () => {
    const messages = [
      { role: "system" as const, content: "You are terse." },
      { role: "user" as const, content: "Name a mixture-of-experts model." },
    ];
    const stream = await openai.chat.completions.create({
      model: MODEL,
      messages,
      max_completion_tokens: 10,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
      stream: true,
      stream_options: { include_usage: true },
      ...{ ignore_eos: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    const withFinish = chunks.filter((c) => c.choices[0]?.finish_reason != null);
    assert.equal(withFinish.length, 1);
    assert.equal(withFinish[0]!.choices[0]!.finish_reason, "length");
    const usage = chunks[chunks.length - 1]!.usage;
    const promptIds = tokenizer.encode(
      renderChatPrompt(messages, { bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>" }),
    );
    assert.deepEqual(usage, {
      prompt_tokens: promptIds.length,
      completion_tokens: 10,
      total_tokens: promptIds.length + 10,
    });
    const logprobs = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    assert.equal(logprobs.length, 10);
    for (const l of logprobs) {
      assert.ok(l.logprob <= 0);
      assert.equal(l.top_logprobs.length, 2);
      assert.deepEqual(l.bytes, [...Buffer.from(l.token, "utf8")]);
      // Greedy: the chosen token is the likeliest alternative.
      assert.equal(l.top_logprobs[0]!.token, l.token);
    }
    // The same request without streaming gives the same text (greedy).
    const whole = await openai.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 10,
      temperature: 0,
      ...{ ignore_eos: true },
    });
    assert.equal(whole.choices[0]!.message.content, content);
    assert.equal(whole.choices[0]!.message.role, "assistant");
    assert.equal(whole.usage?.completion_tokens, 10);
  });

  it("returns text over gRPC Generate (and none with skip_detokenize)", async () => {
    const run = async (skipDetokenize: boolean) => {
      let text = "";
      const ids: number[] = [];
      for await (const c of grpc.generate({
        prompt: { case: "text", value: "Numbers like 1, 2, 3" },
        sampling: { maxTokens: 8, ignoreEos: true },
        skipDetokenize,
      })) {
        text += c.text;
        ids.push(...c.tokenIds);
      }
      return { text, ids };
    };
    const withText = await run(false);
    assert.equal(withText.ids.length, 8);
    assert.equal(withText.text, tokenizer.decode(withText.ids));
    const idsOnly = await run(true);
    assert.deepEqual(idsOnly, { text: "", ids: withText.ids });
  });

  it("needs the API key on /v1 (401 without it), not on /metrics", async () => {
    const wrong = new OpenAI({ baseURL: `${cluster.httpUrl}/v1`, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(
      wrong.models.list(),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 401,
    );
    assert.equal((await fetch(`${cluster.httpUrl}/v1/models`)).status, 401);
    assert.equal((await fetch(`${cluster.httpUrl}/metrics`)).status, 200);
    assert.equal((await fetch(`${cluster.httpUrl}/health`)).status, 200);
  });

  it("rejects chat requests it cannot serve with 400 naming the parameter", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: [] }, "messages"],
      [{ messages: [{ role: "tool", content: "x" }] }, "messages"],
      [
        { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
        "messages",
      ],
      [{ top_logprobs: 2 }, "top_logprobs"],
      [{ max_completion_tokens: 5000 }, "max_completion_tokens"],
      [{ tools: [{ type: "function", function: { name: "f" } }] }, "tools"],
    ];
    for (const [patch, param] of cases) {
      await assert.rejects(
        openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hi" }],
          ...patch,
        } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
        (e: unknown) => {
          assert.ok(e instanceof OpenAI.APIError, String(e));
          assert.equal(e.status, 400, `${JSON.stringify(patch)}: ${e.message}`);
          assert.equal(e.param, param, `${JSON.stringify(patch)}: ${e.message}`);
          return true;
        },
      );
    }
  });
});
