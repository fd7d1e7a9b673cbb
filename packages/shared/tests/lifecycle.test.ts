import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, ExpertMeshError, Lifecycle, createLogger, runService } from "@expertmesh/shared";
import type { RunServiceOptions, ServiceHandle, ServiceState } from "@expertmesh/shared";
import { captureLogs, liveGroupMembers, spawnService, waitUntil } from "@expertmesh/shared/testing";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "../../..");
const fixture = join(here, "fixtures/lifecycle-service.ts");

/** runService wired to a fake process and exit, recording what happened. */
function harness(start: RunServiceOptions["start"], options: Partial<RunServiceOptions> = {}) {
  const proc = new EventEmitter();
  const capture = captureLogs();
  const exits: number[] = [];
  const states: ServiceState[] = [];
  const run = runService({
    name: "test",
    logger: createLogger({ service: "test", destination: capture.destination }),
    process: proc,
    exit: (code) => exits.push(code),
    start: async (lifecycle) => {
      lifecycle.onChange((s) => states.push(s));
      return start(lifecycle);
    },
    ...options,
  });
  return { proc, capture, exits, states, run };
}

/** A handle whose drain and stop record their calls; drain resolves when `release()` is called. */
function recordingHandle() {
  const calls: string[] = [];
  let release: () => void = () => {};
  let drainSignal: AbortSignal | undefined;
  const handle: ServiceHandle = {
    drain(signal) {
      calls.push("drain");
      drainSignal = signal;
      return new Promise((resolve) => (release = resolve));
    },
    stop() {
      calls.push("stop");
      return Promise.resolve();
    },
  };
  return { handle, calls, release: () => release(), signal: () => drainSignal };
}

describe("Lifecycle", () => {
  it("moves forward only and tells listeners", () => {
    const lifecycle = new Lifecycle();
    const seen: string[] = [];
    const off = lifecycle.onChange((to, from) => seen.push(`${from}->${to}`));
    assert.equal(lifecycle.isReady(), false);
    lifecycle.transition("ready");
    assert.equal(lifecycle.isReady(), true);
    lifecycle.transition("ready"); // no-op
    lifecycle.transition("draining");
    assert.throws(
      () => lifecycle.transition("ready"),
      (err: unknown) => err instanceof ExpertMeshError && err.code === Code.FAILED_PRECONDITION,
    );
    off();
    lifecycle.transition("stopped");
    assert.deepEqual(seen, ["starting->ready", "ready->draining"]);
    assert.equal(lifecycle.isLive(), false);
  });
});

describe("runService (in process)", () => {
  it("starts, becomes ready, and on SIGTERM drains, stops and exits 0", async () => {
    const h = recordingHandle();
    const t = harness(() => Promise.resolve(h.handle));
    await waitUntil(() => t.run.lifecycle.isReady());
    t.proc.emit("SIGTERM");
    await waitUntil(() => h.calls.includes("drain"));
    assert.equal(t.run.lifecycle.state, "draining");
    assert.equal(h.calls.includes("stop"), false, "stop must wait for drain");
    h.release();
    assert.equal(await t.run.exited, 0);
    assert.deepEqual(h.calls, ["drain", "stop"]);
    assert.deepEqual(t.states, ["ready", "draining", "stopped"]);
    assert.deepEqual(t.exits, [0]);
    assert.deepEqual(
      t.capture.records.map((r) => r.msg),
      ["starting", "ready", "draining", "drained", "stopped"],
    );
    assert.equal(t.capture.find("draining")[0]?.reason, "SIGTERM");
    assert.equal(t.proc.listenerCount("SIGTERM"), 0, "signal handlers are removed on exit");
  });

  it("stops anyway when drain passes its deadline, aborting the drain's signal", async () => {
    const h = recordingHandle();
    const t = harness(() => Promise.resolve(h.handle), { drainTimeoutMs: 30 });
    await waitUntil(() => t.run.lifecycle.isReady());
    t.proc.emit("SIGINT");
    assert.equal(await t.run.exited, 0);
    assert.equal(h.signal()?.aborted, true);
    assert.deepEqual(h.calls, ["drain", "stop"]);
    assert.equal(t.capture.find("drain timed out; stopping anyway").length, 1);
  });

  it("a second signal forces the exit with 128 + signal number", async () => {
    const h = recordingHandle();
    const t = harness(() => Promise.resolve(h.handle));
    await waitUntil(() => t.run.lifecycle.isReady());
    t.proc.emit("SIGTERM");
    t.proc.emit("SIGINT");
    assert.equal(await t.run.exited, 130);
    h.release();
    assert.deepEqual(t.exits, [130], "exit is called once");
    assert.equal(t.capture.find("second signal: forcing exit").length, 1);
  });

  it("exits 1 when start fails", async () => {
    const t = harness(() => Promise.reject(new Error("port in use")));
    assert.equal(await t.run.exited, 1);
    const [fatal] = t.capture.find("failed to start");
    assert.equal(fatal?.level, "fatal");
    assert.match(JSON.stringify(fatal?.err), /port in use/);
    assert.equal(t.proc.listenerCount("SIGTERM"), 0);
  });

  it("exits 1 on an uncaught exception or unhandled rejection", async () => {
    for (const event of ["uncaughtException", "unhandledRejection"]) {
      const h = recordingHandle();
      const t = harness(() => Promise.resolve(h.handle));
      await waitUntil(() => t.run.lifecycle.isReady());
      t.proc.emit(event, new Error("boom"));
      assert.equal(await t.run.exited, 1, event);
      assert.equal(t.capture.records.at(-1)?.level, "fatal");
    }
  });

  it("exits 1 when stop fails", async () => {
    const t = harness(() =>
      Promise.resolve({
        drain: () => Promise.resolve(),
        stop: () => Promise.reject(new Error("close failed")),
      }),
    );
    await waitUntil(() => t.run.lifecycle.isReady());
    t.run.shutdown();
    assert.equal(await t.run.exited, 1);
    assert.equal(t.capture.find("stop failed").length, 1);
  });

  it("a signal during start is honoured once start finishes, without becoming ready", async () => {
    let finishStart: (h: ServiceHandle) => void = () => {};
    const h = recordingHandle();
    const t = harness(() => new Promise<ServiceHandle>((resolve) => (finishStart = resolve)));
    await waitUntil(() => t.capture.find("starting").length === 1);
    t.proc.emit("SIGTERM");
    assert.equal(t.run.lifecycle.state, "draining");
    finishStart(h.handle);
    await waitUntil(() => h.calls.includes("drain"));
    h.release();
    assert.equal(await t.run.exited, 0);
    assert.deepEqual(t.states, ["draining", "stopped"]);
  });
});

describe("runService (real process)", () => {
  // tsx's esbuild helper outlives its parent by a moment (it exits on stdin EOF): wait, don't sleep.
  const groupGone = (pgid: number): Promise<boolean> =>
    waitUntil(() => liveGroupMembers(pgid).length === 0, {
      timeoutMs: 3_000,
      what: `process group ${pgid} to empty`,
    });

  it("on SIGTERM reports not ready, drains, stops its children and exits 0", async () => {
    const service = spawnService(process.execPath, ["--import", "tsx", fixture], {
      cwd: repoRoot,
      name: "fixture",
    });
    try {
      const listening = await service.waitForLine(/"msg":"listening"/, 20_000);
      const { port, helperPid } = JSON.parse(listening.input ?? "{}") as { port: number; helperPid: number };
      await service.waitForLine(/"msg":"ready"/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);

      service.kill("SIGTERM"); // to the service only, as the kubelet would; its children are its job
      await service.waitForLine(/"msg":"draining"/);
      // The fixture's drain finishes only once a probe has seen it not ready.
      await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 503, {
        what: "/readyz to report 503",
      });
      const exit = await service.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, service.output());
      await service.waitForLine(/"msg":"stopped"/);
      // Its helper was stopped by the service itself, before it exited.
      assert.equal(liveGroupMembers(service.pid).includes(helperPid), false);
      await groupGone(service.pid);
    } finally {
      await service.stop();
    }
  });

  it("a second SIGTERM during a hung drain forces exit 143; stop() reaps the group", async () => {
    const service = spawnService(process.execPath, ["--import", "tsx", fixture], {
      cwd: repoRoot,
      name: "fixture",
      env: { EXPERTMESH_FIXTURE_HANG_DRAIN: "true" },
    });
    try {
      await service.waitForLine(/"msg":"ready"/, 20_000);
      service.kill("SIGTERM");
      await service.waitForLine(/"msg":"draining"/);
      service.kill("SIGTERM");
      assert.deepEqual(await service.exited, { code: 143, signal: null }, service.output());
      assert.match(service.output(), /second signal: forcing exit/);
      // The forced exit left the helper behind in the group; stop() must not.
      assert.notDeepEqual(liveGroupMembers(service.pid), []);
    } finally {
      await service.stop();
    }
    await groupGone(service.pid);
  });

  it("refuses to start on bad configuration, naming every problem", async () => {
    const service = spawnService(process.execPath, ["--import", "tsx", fixture], {
      cwd: repoRoot,
      name: "fixture",
      env: { EXPERTMESH_METRICS_PORT: "http", EXPERTMESH_BOGUS: "1" },
    });
    try {
      const exit = await service.exited;
      await service.waitForLine(/EXPERTMESH_BOGUS: unknown variable/);
      assert.equal(exit.code, 1);
      assert.match(service.output(), /invalid configuration \(2 problems\)/);
      assert.match(service.output(), /EXPERTMESH_METRICS_PORT="http": expected int in \[0, 65535\]/);
    } finally {
      await service.stop();
    }
  });
});
