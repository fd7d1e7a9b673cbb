/**
 * The local cluster's Redis: Debian's `redis-server` from PATH on a free loopback port, no
 * persistence, ready once it answers PING (@expertmesh/shared's startRedisServerProcess), run as
 * one of the launcher's ServiceProcesses.
 */
import { startRedisServerProcess } from "@expertmesh/shared";
import { ServiceProcess } from "./service-process.ts";
import type { ProcessOutput } from "./service-process.ts";

export { findOnPath, pingRedis } from "@expertmesh/shared";

export interface RedisProcess {
  readonly process: ServiceProcess;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
}

export interface StartRedisOptions {
  /** Working directory of the server (it writes nothing there: no RDB, no AOF). */
  readonly dir: string;
  readonly output: ProcessOutput;
  readonly timeoutMs: number;
}

export async function startRedis(options: StartRedisOptions): Promise<RedisProcess> {
  const { child, port, url } = await startRedisServerProcess({
    dir: options.dir,
    timeoutMs: options.timeoutMs,
    extraArgs: ["--loglevel", "warning"],
    spawn: (binary, args) =>
      new ServiceProcess({
        name: "redis",
        command: binary,
        args,
        cwd: options.dir,
        env: {},
        output: options.output,
      }),
    stop: (proc) => proc.stop(1_000),
    exitedEarly: (proc, port) => proc.diedWhile(`starting on port ${port}`),
  });
  return { process: child, port, url };
}
