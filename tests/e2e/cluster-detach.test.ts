/**
 * `expertmesh up --preset tiny --detach` then `expertmesh down`, run from a scratch directory:
 * the tiny checkpoint is written once under .expertmesh/models/tiny, the launcher returns with
 * the cluster SERVING (state file with pids and addresses, logs in files), a second `up` is
 * refused while it runs, and `down` stops every process group and removes the state file.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AttentionService } from "@expertmesh/proto";
import { createGrpcChannel, createGrpcClient } from "@expertmesh/shared";
import { liveGroupMembers } from "@expertmesh/shared/testing";
import { expertmesh } from "./helpers/cluster-harness.ts";

interface State {
  detached: boolean;
  modelDir: string;
  members: { name: string; role: string; pid: number; address: string; log: string | null }[];
}

describe("expertmesh up --detach / expertmesh down", () => {
  let cwd: string;
  let state: State | undefined;

  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), "expertmesh-e2e-detach-"));
  });
  after(async () => {
    // Whatever happened above, leave no process behind.
    for (const m of state?.members ?? []) {
      if (liveGroupMembers(m.pid).length > 0) process.kill(-m.pid, "SIGKILL");
    }
    await rm(cwd, { recursive: true, force: true });
  });

  it("starts a detached tiny cluster, refuses a second one, and down stops every process", async () => {
    const up = expertmesh(
      ["up", "--preset", "tiny", "--detach", "--workers", "2", "--nodes", "1", "--log-level", "warn"],
      { cwd },
    );
    const exit = await up.exited;
    assert.equal(exit.code, 0, up.output());
    assert.match(up.output(), /wrote the tiny preset checkpoint/);
    assert.match(up.output(), /cluster ready \(detached\): 1 attention, 2 workers on 1 nodes/);
    const stateFile = join(cwd, ".expertmesh", "cluster.json");
    state = JSON.parse(readFileSync(stateFile, "utf8")) as State;
    assert.equal(state.detached, true);
    assert.equal(state.modelDir, join(cwd, ".expertmesh", "models", "tiny"));
    assert.deepEqual(
      state.members.map((m) => m.name),
      ["redis", "w0", "w1", "a0", "router"],
    );
    for (const m of state.members) {
      assert.ok(liveGroupMembers(m.pid).length > 0, `${m.name} runs after the launcher returned`);
      await access(m.log!);
    }

    // The detached attention node serves.
    const channel = createGrpcChannel(state.members.find((m) => m.name === "a0")!.address);
    try {
      const load = await createGrpcClient(AttentionService, channel).getLoad({}, { timeoutMs: 5_000 });
      assert.ok(load.totalKvBlocks > 0);
    } finally {
      channel.close();
    }

    const again = expertmesh(["up", "--preset", "tiny", "--detach"], { cwd });
    assert.equal((await again.exited).code, 1);
    assert.match(again.output(), /a cluster is already running .*'expertmesh down' first/);

    const down = expertmesh(["down"], { cwd });
    assert.equal((await down.exited).code, 0, down.output());
    assert.match(down.output(), /cluster stopped/);
    for (const m of state.members)
      assert.deepEqual(liveGroupMembers(m.pid), [], `${m.name} left processes behind`);
    await assert.rejects(access(stateFile));
  });
});
