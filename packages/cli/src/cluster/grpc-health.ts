/**
 * Readiness through the standard grpc.health.v1 check every ExpertMesh server answers: the
 * launcher waits for SERVING (never a fixed sleep), and fails at once when the process dies.
 */
import { ChannelCredentials, Client } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { ServiceProcess } from "./service-process.ts";

/** grpc.health.v1 ServingStatus as a word; "UNREACHABLE" when the check itself failed. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNREACHABLE";

const STATUS_NAMES: readonly HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/** One Check call on an open client ("" = the whole server). */
function check(client: Client, service: string, timeoutMs: number): Promise<HealthStatus> {
  const method = healthService.Check;
  if (method === undefined) throw new ExpertMeshError(Code.INTERNAL, "grpc-health-check has no Check method");
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { service },
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        if (error !== null || response === undefined) {
          resolve("UNREACHABLE");
          return;
        }
        const status = (response as { status?: unknown }).status;
        resolve(
          typeof status === "number"
            ? (STATUS_NAMES[status] ?? "UNKNOWN")
            : ((status as HealthStatus | undefined) ?? "UNKNOWN"),
        );
      },
    );
  });
}

/** The server's health status right now. */
export async function checkHealth(address: string, timeoutMs = 1_000, service = ""): Promise<HealthStatus> {
  const client = new Client(address, ChannelCredentials.createInsecure());
  try {
    return await check(client, service, timeoutMs);
  } finally {
    client.close();
  }
}

/**
 * Polls `address` until it reports SERVING. Rejects with UNAVAILABLE (and the process's last
 * lines) as soon as `process` exits, or DEADLINE_EXCEEDED after `timeoutMs`.
 */
export async function waitUntilServing(
  process: ServiceProcess,
  address: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const client = new Client(address, ChannelCredentials.createInsecure());
  let last: HealthStatus = "UNREACHABLE";
  try {
    for (;;) {
      if (process.exit !== undefined) throw process.diedWhile(`starting (health was ${last})`);
      last = await Promise.race([
        check(client, "", 1_000),
        process.exited.then((): HealthStatus => "UNREACHABLE"),
      ]);
      if (last === "SERVING") return;
      if (process.exit !== undefined) throw process.diedWhile(`starting (health was ${last})`);
      if (Date.now() >= deadline) {
        throw new ExpertMeshError(
          Code.DEADLINE_EXCEEDED,
          `${process.name} at ${address} was not SERVING within ${timeoutMs} ms (health: ${last}); last output:\n${process.tail()}`,
        );
      }
      // Between polls: wake early if the process dies.
      await Promise.race([new Promise((resolve) => setTimeout(resolve, 100)), process.exited]);
    }
  } finally {
    client.close();
  }
}
