import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { AdmissionQueue, chooseAttentionNode } from "./admission.ts";
import type { NodeLoad } from "./attention-pool.ts";

function node(id: string, over: Partial<NodeLoad> = {}): NodeLoad {
  return {
    id,
    serving: true,
    inFlight: 0,
    running: 0,
    waiting: 0,
    freeKvBlocks: 100,
    totalKvBlocks: 100,
    kvBlockSize: 16,
    maxRunning: 4,
    ...over,
  };
}

const code = (c: Code) => (e: unknown) => e instanceof ExpertMeshError && e.code === c;

describe("chooseAttentionNode", () => {
  it("picks the node with the fewest sequences, counting the node's own view too", () => {
    assert.deepEqual(chooseAttentionNode([node("a0", { inFlight: 2 }), node("a1", { inFlight: 1 })], 10), {
      node: "a1",
    });
    // Another router's work shows in running + waiting.
    assert.deepEqual(chooseAttentionNode([node("a0", { inFlight: 1 }), node("a1", { running: 3 })], 10), {
      node: "a0",
    });
  });
  it("prefers a node whose free KV blocks hold the prompt", () => {
    const nodes = [node("a0", { freeKvBlocks: 2 }), node("a1", { inFlight: 3, freeKvBlocks: 50 })];
    assert.deepEqual(chooseAttentionNode(nodes, 100), { node: "a1" });
    assert.deepEqual(chooseAttentionNode(nodes, 10), { node: "a0" });
  });
  it("breaks ties by free KV blocks, then id", () => {
    assert.deepEqual(
      chooseAttentionNode([node("a1", { freeKvBlocks: 10 }), node("a0", { freeKvBlocks: 20 })], 1),
      { node: "a0" },
    );
    assert.deepEqual(chooseAttentionNode([node("a1"), node("a0")], 1), { node: "a0" });
  });
  it("skips full and non-serving nodes: busy when all serving ones are full, unavailable when none serves", () => {
    assert.deepEqual(chooseAttentionNode([node("a0", { inFlight: 4 }), node("a1", { serving: false })], 1), {
      busy: true,
    });
    assert.deepEqual(chooseAttentionNode([node("a0", { serving: false })], 1), { unavailable: true });
    assert.deepEqual(chooseAttentionNode([], 1), { unavailable: true });
  });
});

describe("AdmissionQueue", () => {
  /** One node with `slots` slots; started requests occupy them until released. */
  function setup(slots: number, maxQueued: number) {
    const state = { inFlight: 0, serving: true };
    const queue = new AdmissionQueue({
      maxQueued,
      loads: () => [node("a0", { inFlight: state.inFlight, maxRunning: slots, serving: state.serving })],
    });
    const started: string[] = [];
    const admit = (name: string, priority: "interactive" | "batch" = "interactive", signal?: AbortSignal) =>
      queue.admit({
        priority,
        promptTokens: 4,
        ...(signal === undefined ? {} : { signal }),
        start: (nodeId) => {
          state.inFlight++;
          started.push(name);
          return nodeId;
        },
      });
    const release = () => {
      state.inFlight--;
      queue.pump();
    };
    return { queue, state, started, admit, release };
  }

  it("starts at once while slots are free, synchronously", () => {
    const { admit, started } = setup(2, 0);
    void admit("r1");
    void admit("r2");
    assert.deepEqual(started, ["r1", "r2"]);
  });

  it("queues when full, RESOURCE_EXHAUSTED beyond the queue bound, and admits in order as slots free", async () => {
    const { admit, release, started, queue } = setup(1, 2);
    await admit("r1");
    const r2 = admit("r2");
    const r3 = admit("r3");
    await assert.rejects(admit("r4"), code(Code.RESOURCE_EXHAUSTED));
    assert.equal(queue.size, 2);
    release();
    assert.equal(await r2, "a0");
    release();
    assert.equal(await r3, "a0");
    assert.deepEqual(started, ["r1", "r2", "r3"]);
  });

  it("admits interactive requests before batch ones", async () => {
    const { admit, release, started } = setup(1, 10);
    await admit("first");
    const b = admit("batch", "batch");
    const i = admit("interactive", "interactive");
    release();
    await i;
    release();
    await b;
    assert.deepEqual(started, ["first", "interactive", "batch"]);
  });

  it("removes a waiter whose signal aborts", async () => {
    const { admit, queue } = setup(1, 10);
    await admit("r1");
    const controller = new AbortController();
    const waiting = admit("r2", "interactive", controller.signal);
    controller.abort(new ExpertMeshError(Code.CANCELLED, "gone"));
    await assert.rejects(waiting, code(Code.CANCELLED));
    assert.equal(queue.size, 0);
  });

  it("UNAVAILABLE without a serving node, also for waiters when the last node goes", async () => {
    const { admit, state, queue } = setup(1, 10);
    await admit("r1");
    const waiting = admit("r2");
    state.serving = false;
    queue.pump();
    await assert.rejects(waiting, code(Code.UNAVAILABLE));
    await assert.rejects(admit("r3"), code(Code.UNAVAILABLE));
  });

  it("close fails waiters and refuses new requests", async () => {
    const { admit, queue } = setup(1, 10);
    await admit("r1");
    const waiting = admit("r2");
    queue.close(new ExpertMeshError(Code.UNAVAILABLE, "shutting down"));
    await assert.rejects(waiting, code(Code.UNAVAILABLE));
    await assert.rejects(admit("r3"), code(Code.UNAVAILABLE));
  });
});
