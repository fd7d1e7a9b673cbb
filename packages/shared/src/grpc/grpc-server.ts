import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, service as healthServiceDefinition } from "grpc-health-check";
import { Code, ExpertMeshError } from "../errors.ts";
import { toChannelOptions } from "./channel-options.ts";
import type { TransportOptions } from "./channel-options.ts";
import { reflectionPackageDefinition } from "./reflection-definition.ts";
import { toGrpcImplementation } from "./service-impl.ts";
import type { ServiceImpl } from "./service-impl.ts";
import { logInternalErrorsToStderr } from "./wire-error.ts";
import type { HandlerErrorLogger } from "./wire-error.ts";

/** Health status as grpc.health.v1 names it. */
export type ServingStatus = "SERVING" | "NOT_SERVING";

export interface GrpcServerOptions extends TransportOptions {
  /** Handler failures go here; internal causes are logged, never sent. Default: internal ones to stderr. */
  onHandlerError?: HandlerErrorLogger;
  /** Health status of the server ("") and of each added service when bound (default SERVING). */
  initialStatus?: ServingStatus;
  /** Serve grpc.reflection v1 and v1alpha (default true). */
  reflection?: boolean;
  /** Default: insecure (TLS terminates elsewhere, or the cluster network is trusted). */
  credentials?: ServerCredentials;
}

/** Grace period of `shutdown` before in-flight calls are cancelled. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

/**
 * A grpc-js server serving protobuf-es services, with grpc.health.v1.Health and server
 * reflection. Add every service, then `bind`; `shutdown` when done.
 */
export class GrpcServer {
  /** The underlying grpc-js server (an escape hatch; prefer the methods here). */
  readonly server: Server;
  private readonly health = new HealthImplementation();
  private readonly files: DescFile[] = [];
  private readonly serviceNames: string[] = [];
  private readonly onHandlerError: HandlerErrorLogger;
  private readonly initialStatus: ServingStatus;
  private readonly credentials: ServerCredentials;
  private readonly reflection: boolean;
  private bound = false;

  constructor(options: GrpcServerOptions = {}) {
    this.server = new Server(toChannelOptions(options));
    this.onHandlerError = options.onHandlerError ?? logInternalErrorsToStderr;
    this.initialStatus = options.initialStatus ?? "SERVING";
    this.credentials = options.credentials ?? ServerCredentials.createInsecure();
    this.reflection = options.reflection ?? true;
  }

  /** Serves `service` with `impl` (one handler per method). Only before `bind`. */
  addService<S extends DescService>(service: S, impl: ServiceImpl<S>): this {
    if (this.bound) {
      throw new ExpertMeshError(
        Code.FAILED_PRECONDITION,
        `add ${service.typeName} before bind (reflection is fixed then)`,
      );
    }
    if (this.serviceNames.includes(service.typeName)) {
      throw new ExpertMeshError(Code.ALREADY_EXISTS, `${service.typeName} is already served`);
    }
    const { definition, implementation } = toGrpcImplementation(service, impl, { log: this.onHandlerError });
    this.server.addService(definition, implementation);
    this.files.push(service.file);
    this.serviceNames.push(service.typeName);
    return this;
  }

  /**
   * Binds `address` ("host:port"; port 0 lets the OS pick), registers health and reflection on
   * the first bind, and serves (grpc-js starts serving on bind). Resolves to the bound port.
   */
  async bind(address: string): Promise<number> {
    if (!this.bound) {
      this.bound = true;
      this.health.setStatus("", this.initialStatus);
      for (const name of this.serviceNames) this.health.setStatus(name, this.initialStatus);
      this.health.addToServer(this.server);
      if (this.reflection) {
        const healthFiles = Object.values(healthServiceDefinition)[0]?.requestType.fileDescriptorProtos ?? [];
        new ReflectionService(reflectionPackageDefinition(this.files, healthFiles)).addToServer(this.server);
      }
    }
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, this.credentials, (error, port) => {
        if (error !== null) {
          reject(
            new ExpertMeshError(Code.UNAVAILABLE, `cannot listen on ${address}: ${error.message}`, {
              cause: error,
            }),
          );
        } else {
          resolve(port);
        }
      });
    });
  }

  /** Sets the health status of one service, or of the whole server with "". */
  setServingStatus(service: string, status: ServingStatus): void {
    this.health.setStatus(service, status);
  }

  /**
   * Graceful stop: health turns NOT_SERVING, new calls are refused, in-flight calls may finish
   * for `graceMs`, then the rest are cancelled (their handlers' signals abort).
   */
  async shutdown(graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> {
    this.setServingStatus("", "NOT_SERVING");
    for (const name of this.serviceNames) this.setServingStatus(name, "NOT_SERVING");
    const timer = setTimeout(() => this.server.forceShutdown(), graceMs);
    try {
      await this.tryShutdown();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops accepting calls and resolves once every in-flight call has ended. */
  tryShutdown(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.tryShutdown((error) => (error === undefined ? resolve() : reject(error)));
    });
  }

  /** Cancels every call and closes every connection now. */
  forceShutdown(): void {
    this.server.forceShutdown();
  }
}

/** A GrpcServer with generous message limits, health and reflection (see GrpcServerOptions). */
export function createGrpcServer(options: GrpcServerOptions = {}): GrpcServer {
  return new GrpcServer(options);
}
