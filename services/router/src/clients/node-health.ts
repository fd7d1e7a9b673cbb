/**
 * grpc.health.v1 Check over an existing channel: an attention node that is draining (or whose
 * engine died) reports NOT_SERVING while it still answers GetLoad, and must get no new sequences.
 */
import { service as healthService } from "grpc-health-check";
import type { GrpcChannel } from "@expertmesh/shared";

/** True when `service` on the channel's server reports SERVING; false on any other answer or failure. */
export function isServing(channel: GrpcChannel, service: string, timeoutMs: number): Promise<boolean> {
  const method = healthService.Check;
  if (method === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    channel.client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { service },
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        // proto-loader decodes the enum as its name or its number, depending on options.
        const status = (response as { status?: unknown } | undefined)?.status;
        resolve(error === null && (status === "SERVING" || status === 1));
      },
    );
  });
}
