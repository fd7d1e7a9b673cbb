import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { Counter, Lifecycle, createMetricsRegistry, startMetricsServer } from "@expertmesh/shared";
import type { MetricsServer, Registry } from "@expertmesh/shared";

describe("metrics server", () => {
  let registry: Registry;
  let lifecycle: Lifecycle;
  let server: MetricsServer;
  let base: string;

  before(async () => {
    registry = createMetricsRegistry({ prefix: "expertmesh_test_" });
    lifecycle = new Lifecycle();
    server = await startMetricsServer({ registry, port: 0, host: "127.0.0.1", health: lifecycle });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(() => server.close());

  it("serves a counter it was given in Prometheus text format", async () => {
    const rows = new Counter({
      name: "expertmesh_dispatched_rows_total",
      help: "Rows dispatched to expert workers.",
      labelNames: ["worker"],
      registers: [registry],
    });
    rows.inc({ worker: "w0" }, 3);
    rows.inc({ worker: "w0" }, 4);
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4; charset=utf-8$/);
    const text = await res.text();
    assert.match(text, /^# TYPE expertmesh_dispatched_rows_total counter$/m);
    assert.match(text, /^expertmesh_dispatched_rows_total\{worker="w0"\} 7$/m);
    // Default process metrics carry the prefix.
    assert.match(text, /^expertmesh_test_process_cpu_seconds_total /m);
    assert.match(text, /^expertmesh_test_nodejs_eventloop_lag_seconds /m);
  });

  it("keeps metrics out of prom-client's global registry", async () => {
    const { register } = await import("prom-client");
    assert.equal(register.getSingleMetric("expertmesh_dispatched_rows_total"), undefined);
  });

  it("flips /readyz with the lifecycle and /healthz once stopped", async () => {
    const probe = async (path: string): Promise<number> => (await fetch(`${base}${path}`)).status;
    assert.equal(await probe("/readyz"), 503); // starting
    assert.equal(await probe("/healthz"), 200);
    lifecycle.transition("ready");
    assert.equal(await probe("/readyz"), 200);
    assert.equal(await (await fetch(`${base}/readyz`)).text(), "ready\n");
    lifecycle.transition("draining");
    assert.equal(await probe("/readyz"), 503);
    assert.equal(await probe("/healthz"), 200);
    lifecycle.transition("stopped");
    assert.equal(await probe("/healthz"), 503);
  });

  it("answers 404 for other paths and 405 for other methods", async () => {
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/metricsx`)).status, 404);
    assert.equal((await fetch(`${base}/metrics?name=x`)).status, 200);
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  });

  it("close() stops listening even with keep-alive connections open", async () => {
    const other = await startMetricsServer({ registry, port: 0, host: "127.0.0.1" });
    const res = await fetch(`http://127.0.0.1:${other.port}/healthz`); // keep-alive by default
    assert.equal(res.status, 200);
    await res.text();
    await other.close();
    const refused = await new Promise<string | undefined>((resolve) => {
      const socket = connect({ port: other.port, host: "127.0.0.1" });
      socket.on("connect", () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.on("error", (err: NodeJS.ErrnoException) => resolve(err.code));
    });
    assert.equal(refused, "ECONNREFUSED");
  });
});
