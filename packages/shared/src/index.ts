/**
 * @expertmesh/shared — the runtime every ExpertMesh service is built on: errors, typed config,
 * logging, metrics and the process lifecycle. Test helpers live in "@expertmesh/shared/testing".
 */
export * from "./errors.ts";
export * from "./config/index.ts";
export { LOG_LEVELS, createLogger } from "./logging.ts";
export type { LogLevel, Logger, LoggerOptions } from "./logging.ts";
export * from "./metrics/index.ts";
export { Lifecycle, runService } from "./lifecycle.ts";
export type {
  LifecycleListener,
  ProcessLike,
  RunServiceOptions,
  ServiceHandle,
  ServiceRun,
  ServiceState,
} from "./lifecycle.ts";
export * from "./grpc/index.ts";
export * from "./process/index.ts";
