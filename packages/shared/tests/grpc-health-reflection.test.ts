import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { AttentionService, ExpertService, FinishReason, InferenceService } from "@expertmesh/proto";
import { createGrpcServer } from "@expertmesh/shared";
import type { GrpcServer, ServiceImpl } from "@expertmesh/shared";

const run = promisify(execFile);
// Debian's interpreter, where python3-grpcio and python3-protobuf are installed (not the one first on PATH).
const PYTHON = "/usr/bin/python3";
const PROBE = fileURLToPath(new URL("./grpc_probe.py", import.meta.url));

interface ProbeResult {
  health: Record<string, number>;
  reflection: Record<
    "v1alpha" | "v1",
    {
      services?: string[];
      file_containing_symbol?: { files: string[]; services: string[]; methods: string[] };
      errors?: unknown[];
    }
  >;
}

async function pythonHasGrpc(): Promise<boolean> {
  try {
    await run(PYTHON, ["-c", "import grpc, google.protobuf"], { timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

// Small but real implementations: reflection and health are under test, not these.
const inference: ServiceImpl<typeof InferenceService> = {
  *generate(request) {
    yield { requestId: request.requestId, finishReason: FinishReason.STOP };
  },
  getClusterState() {
    return { placementVersion: 1 };
  },
};
const attention: ServiceImpl<typeof AttentionService> = {
  async *serve(requests) {
    for await (const request of requests) {
      if (request.command.case === "addSequence") {
        yield {
          finishes: [{ sequenceId: request.command.value.sequenceId, finishReason: FinishReason.CANCELLED }],
        };
      }
    }
  },
  getLoad() {
    return { running: 0, waiting: 0 };
  },
};
const expert: ServiceImpl<typeof ExpertService> = {
  async *dispatch(requests) {
    for await (const request of requests) yield { microBatchId: request.microBatchId, layer: request.layer };
  },
  getWorkerInfo() {
    return { workerId: "w0" };
  },
};

describe("health and reflection, seen by an independent (Python grpcio) client", { timeout: 60_000 }, () => {
  let server: GrpcServer;
  let address: string;

  before(async () => {
    server = createGrpcServer();
    server
      .addService(InferenceService, inference)
      .addService(AttentionService, attention)
      .addService(ExpertService, expert);
    address = `127.0.0.1:${await server.bind("127.0.0.1:0")}`;
  });

  after(async () => {
    await server.tryShutdown();
  });

  it("reports SERVING and lists and describes every service", async (t) => {
    if (!(await pythonHasGrpc())) {
      t.skip(`${PYTHON} with grpcio and protobuf is not installed`);
      return;
    }
    const { stdout } = await run(
      PYTHON,
      [PROBE, address, "expertmesh.v1.ExpertService", "expertmesh.v1.InferenceService"],
      { timeout: 30_000 },
    );
    const result = JSON.parse(stdout) as ProbeResult;

    // grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING = 1
    assert.deepEqual(result.health, { "": 1, "expertmesh.v1.ExpertService": 1 });

    for (const version of ["v1alpha", "v1"] as const) {
      const reflection = result.reflection[version];
      assert.equal(reflection.errors, undefined, `${version}: ${JSON.stringify(reflection.errors)}`);
      for (const service of [
        "expertmesh.v1.AttentionService",
        "expertmesh.v1.ExpertService",
        "expertmesh.v1.InferenceService",
        "grpc.health.v1.Health",
      ]) {
        assert.ok(
          reflection.services?.includes(service),
          `${version} lists ${service}: ${String(reflection.services)}`,
        );
      }
      // The file that declares the symbol comes first, then its imports.
      const found = reflection.file_containing_symbol;
      assert.equal(found?.files[0], "expertmesh/v1/inference_service.proto");
      assert.ok(found.files.includes("expertmesh/v1/common.proto"));
      assert.ok(found.files.includes("expertmesh/v1/sampling.proto"));
      assert.ok(found.services.includes("expertmesh.v1.InferenceService"));
      // The descriptors are complete: Python builds them into a pool and finds the methods.
      assert.deepEqual(found.methods, [
        "Generate:expertmesh.v1.GenerateRequest:0,1",
        "GetClusterState:expertmesh.v1.GetClusterStateRequest:0,0",
      ]);
    }
  });
});
