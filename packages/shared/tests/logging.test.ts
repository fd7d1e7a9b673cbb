import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError, createLogger } from "@expertmesh/shared";
import { captureLogs } from "@expertmesh/shared/testing";

describe("createLogger", () => {
  it("writes JSON lines with service, level word and ISO time", () => {
    const capture = captureLogs();
    const logger = createLogger({ service: "router", level: "info", destination: capture.destination });
    logger.info({ requestId: "r1" }, "admitted");
    logger.debug("below the level");
    assert.equal(capture.lines.length, 1);
    const [record] = capture.records;
    assert.equal(record?.service, "router");
    assert.equal(record?.level, "info");
    assert.equal(record?.msg, "admitted");
    assert.equal(record?.requestId, "r1");
    assert.equal(record?.pid, process.pid);
    assert.match(record?.time ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("child loggers keep the service and add their bindings", () => {
    const capture = captureLogs();
    const logger = createLogger({
      service: "attention",
      level: "debug",
      destination: capture.destination,
      bindings: { rank: 2 },
    });
    logger.child({ component: "scheduler" }).debug({ batch: 8 }, "step");
    assert.deepEqual(
      capture
        .find("step")
        .map(({ service, rank, component, batch, level }) => ({ service, rank, component, batch, level })),
      [{ service: "attention", rank: 2, component: "scheduler", batch: 8, level: "debug" }],
    );
  });

  it("serializes errors with code and cause chain", () => {
    const capture = captureLogs();
    const logger = createLogger({ service: "expert-worker", destination: capture.destination });
    const err = new ExpertMeshError(Code.INTERNAL, "expert run failed", {
      cause: new Error("onnx: bad shape"),
    });
    logger.error({ err }, "dispatch failed");
    const line = capture.lines[0] ?? "";
    assert.match(line, /"type":"ExpertMeshError"/);
    assert.match(line, /"code":13/);
    assert.match(line, /expert run failed/);
    assert.match(line, /onnx: bad shape/);
    assert.match(line, /"stack":/);
  });
});
