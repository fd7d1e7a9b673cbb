import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import * as shared from "@expertmesh/shared";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import {
  getFreePort,
  liveGroupMembers,
  spawnService,
  startRedisServer,
  waitUntil,
} from "@expertmesh/shared/testing";

describe("waitUntil", () => {
  it("returns the predicate's first truthy value", async () => {
    let calls = 0;
    const value = await waitUntil(() => (++calls >= 3 ? { calls } : undefined), { intervalMs: 1 });
    assert.deepEqual(value, { calls: 3 });
  });

  it("times out with DEADLINE_EXCEEDED naming what it waited for and the last error", async () => {
    await assert.rejects(
      waitUntil(
        () => {
          throw new Error("connection refused");
        },
        { timeoutMs: 30, intervalMs: 5, what: "the router" },
      ),
      (err: unknown) =>
        err instanceof ExpertMeshError &&
        err.code === Code.DEADLINE_EXCEEDED &&
        /waiting for the router \(last error: connection refused\)/.test(err.message),
    );
  });
});

describe("getFreePort", () => {
  it("returns a port that can be listened on", async () => {
    const port = await getFreePort();
    assert.ok(port > 0 && port < 65536);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });
});

describe("spawnService", () => {
  it("captures both streams and finds lines printed before or after the wait", async () => {
    const child = spawnService("sh", ["-c", 'echo "early $EXTRA"; echo oops >&2; read _; echo late'], {
      env: { EXTRA: "42" },
    });
    // stdin is closed, so `read` returns at once and "late" follows.
    const [, word] = (await child.waitForLine(/^early (\d+)$/)) ?? [];
    assert.equal(word, "42");
    await child.waitForLine(/^late$/);
    assert.deepEqual(await child.exited, { code: 0, signal: null });
    assert.deepEqual(
      [...child.lines].sort((a, b) => a.text.localeCompare(b.text)),
      [
        { stream: "stdout", text: "early 42" },
        { stream: "stdout", text: "late" },
        { stream: "stderr", text: "oops" },
      ],
    );
  });

  it("does not pass the test's own EXPERTMESH_ variables on", async () => {
    process.env.EXPERTMESH_LEAK_CHECK = "leaked";
    try {
      const child = spawnService("sh", ["-c", 'echo "value=${EXPERTMESH_LEAK_CHECK:-none}"']);
      await child.waitForLine(/^value=none$/);
      await child.stop();
    } finally {
      delete process.env.EXPERTMESH_LEAK_CHECK;
    }
  });

  it("fails a wait early when the process exits without printing the line", async () => {
    const child = spawnService("sh", ["-c", "echo bye; exit 3"], { name: "quitter" });
    await assert.rejects(
      child.waitForLine(/never/, 10_000),
      /quitter exited \(\{"code":3,"signal":null\}\)[\s\S]*bye/,
    );
  });

  it("fails a wait after its timeout, showing the output so far", async () => {
    const child = spawnService("sh", ["-c", "echo waiting; exec sleep 30"]);
    try {
      await assert.rejects(
        child.waitForLine(/never/, 50),
        /no line matching \/never\/ within 50 ms[\s\S]*waiting/,
      );
    } finally {
      await child.stop();
    }
  });

  it("stop() escalates to SIGKILL and leaves no process of the group", async () => {
    // The shell ignores SIGTERM, and so do the children it starts.
    const child = spawnService("sh", ["-c", "trap '' TERM; sleep 30 & echo started; wait"]);
    await child.waitForLine(/^started$/);
    assert.equal(liveGroupMembers(child.pid).length, 2);
    const exit = await child.stop({ timeoutMs: 100 });
    assert.equal(exit.signal, "SIGKILL");
    await waitUntil(() => liveGroupMembers(child.pid).length === 0, {
      timeoutMs: 2_000,
      what: "group to empty",
    });
  });

  it("reports a command that cannot start", async () => {
    const child = spawnService("/nonexistent/expertmesh-binary", []);
    await assert.rejects(
      child.waitForLine(/x/),
      /failed to start: spawn \/nonexistent\/expertmesh-binary ENOENT/,
    );
  });
});

describe("startRedisServer without redis-server", () => {
  it("says how to install it", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await assert.rejects(startRedisServer(), (err: unknown) => {
        assert.ok(err instanceof ExpertMeshError);
        assert.equal(err.code, Code.FAILED_PRECONDITION);
        assert.match(err.message, /apt-get install redis-server/);
        return true;
      });
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("package entry points", () => {
  it("keeps test helpers out of the main entry", () => {
    for (const name of ["spawnService", "startRedisServer", "waitUntil", "getFreePort", "captureLogs"]) {
      assert.equal(name in shared, false, name);
    }
    assert.equal(typeof shared.runService, "function");
  });
});
