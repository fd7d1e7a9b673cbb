/** Test helpers: "@expertmesh/shared/testing". Never imported by production code. */
export { captureLogs } from "./log-capture.ts";
export type { LogCapture, LogRecord } from "./log-capture.ts";
export { getFreePort } from "./free-port.ts";
export { pingRedis, startRedisServer } from "./redis-server.ts";
export type { RedisServer, StartRedisServerOptions } from "./redis-server.ts";
export { liveGroupMembers, spawnService } from "./spawn-service.ts";
export type { OutputLine, ProcessExit, ServiceProcess, SpawnServiceOptions } from "./spawn-service.ts";
export { waitUntil } from "./wait-until.ts";
export type { WaitUntilOptions } from "./wait-until.ts";
