import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { Code, ExpertMeshError, invalidArgument, isRetryable, toWireStatus } from "@expertmesh/shared";
import { getFreePort } from "@expertmesh/shared/testing";

/** A real ECONNREFUSED from the OS, not a hand-made object. */
async function connectionRefused(): Promise<unknown> {
  const port = await getFreePort();
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.on("connect", () => resolve(new Error("unexpectedly connected")));
    socket.on("error", resolve);
  });
}

describe("toWireStatus", () => {
  it("passes client-visible ExpertMeshErrors through with their details", () => {
    const status = toWireStatus(invalidArgument("max_tokens", "must be > 0"));
    assert.deepEqual(status, {
      code: Code.INVALID_ARGUMENT,
      message: "max_tokens: must be > 0",
      details: { field: "max_tokens" },
      httpStatus: 400,
    });
    const busy = toWireStatus(
      new ExpertMeshError(Code.RESOURCE_EXHAUSTED, "queue full", { details: { limit: "64" } }),
    );
    assert.equal(busy.code, Code.RESOURCE_EXHAUSTED);
    assert.equal(busy.message, "queue full");
    assert.deepEqual(busy.details, { limit: "64" });
  });

  it("hides INTERNAL messages, details and causes", () => {
    const cause = new Error("ENOMEM at /secret/path/model.onnx");
    const err = new ExpertMeshError(Code.INTERNAL, "session.run failed on layer 3", {
      cause,
      details: { layer: "3" },
    });
    assert.equal(err.cause, cause); // kept for the logs
    const status = toWireStatus(err);
    assert.deepEqual(status, {
      code: Code.INTERNAL,
      message: "internal error",
      details: {},
      httpStatus: 500,
    });
    assert.doesNotMatch(JSON.stringify(status), /secret|layer/);
  });

  it("turns anything unknown into INTERNAL", () => {
    for (const thrown of [
      new TypeError("x is undefined"),
      "a string",
      42,
      null,
      undefined,
      { code: "EWEIRD" },
    ]) {
      const status = toWireStatus(thrown);
      assert.equal(status.code, Code.INTERNAL);
      assert.equal(status.message, "internal error");
      assert.equal(status.httpStatus, 500);
    }
  });

  it("maps a real ECONNREFUSED to UNAVAILABLE", async () => {
    const refused = await connectionRefused();
    assert.equal((refused as NodeJS.ErrnoException).code, "ECONNREFUSED");
    const status = toWireStatus(refused);
    assert.equal(status.code, Code.UNAVAILABLE);
    assert.equal(status.httpStatus, 503);
    assert.equal(status.message, "peer connection failed");
    assert.equal(ExpertMeshError.from(refused).cause, refused);
  });

  it("maps other socket errors by code", () => {
    const sys = (code: string): Error => Object.assign(new Error(code), { code });
    assert.equal(toWireStatus(sys("ECONNRESET")).code, Code.UNAVAILABLE);
    assert.equal(toWireStatus(sys("ETIMEDOUT")).code, Code.DEADLINE_EXCEEDED);
    assert.equal(toWireStatus(sys("ETIMEDOUT")).httpStatus, 504);
  });

  it("keeps a grpc-js ServiceError's status", () => {
    const grpcError = Object.assign(new Error("14 UNAVAILABLE: No connection established"), {
      code: 14,
      details: "No connection established",
      metadata: {},
    });
    const status = toWireStatus(grpcError);
    assert.equal(status.code, Code.UNAVAILABLE);
    assert.equal(status.message, "No connection established");
  });

  it("gives the HTTP status the OpenAI API uses", () => {
    const http = (code: Code): number => toWireStatus(new ExpertMeshError(code, "m")).httpStatus;
    assert.equal(http(Code.INVALID_ARGUMENT), 400);
    assert.equal(http(Code.RESOURCE_EXHAUSTED), 429);
    assert.equal(http(Code.UNAVAILABLE), 503);
    assert.equal(http(Code.INTERNAL), 500);
    assert.equal(http(Code.DATA_LOSS), 500);
    assert.equal(http(Code.NOT_FOUND), 404);
  });
});

describe("ExpertMeshError", () => {
  it("from() returns an ExpertMeshError unchanged", () => {
    const err = new ExpertMeshError(Code.NOT_FOUND, "no such model");
    assert.equal(ExpertMeshError.from(err), err);
    assert.equal(err.name, "ExpertMeshError");
    assert.ok(err instanceof Error);
  });
});

describe("isRetryable", () => {
  it("retries only UNAVAILABLE, RESOURCE_EXHAUSTED and ABORTED", () => {
    const retryable = Object.values(Code)
      .filter((c): c is Code => typeof c === "number")
      .filter(isRetryable)
      .sort((a, b) => a - b);
    assert.deepEqual(retryable, [Code.RESOURCE_EXHAUSTED, Code.ABORTED, Code.UNAVAILABLE]);
    assert.equal(isRetryable(Code.INTERNAL), false);
    assert.equal(isRetryable(Code.INVALID_ARGUMENT), false);
  });
});
