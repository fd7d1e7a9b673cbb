/**
 * A throwaway Redis for tests: Debian's `redis-server` on a free loopback port, no persistence,
 * ready once it answers PING (startRedisServerProcess, run under spawnService).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ExpertMeshError } from "../errors.ts";
import { startRedisServerProcess } from "../process/redis-server.ts";
import { spawnService } from "./spawn-service.ts";
import type { ServiceProcess } from "./spawn-service.ts";

export { pingRedis } from "../process/redis-server.ts";

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Shuts the server down and removes its working directory. */
  stop(): Promise<void>;
}

export interface StartRedisServerOptions {
  /** How long to wait for PONG; 10 s by default. */
  timeoutMs?: number;
}

export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "expertmesh-redis-"));
  try {
    const { child, port, url } = await startRedisServerProcess({
      dir,
      timeoutMs: options.timeoutMs ?? 10_000,
      // getFreePort can race with another process taking the port: a server that exits early is retried.
      attempts: 3,
      spawn: (binary, args, port) => spawnService(binary, args, { name: `redis-server:${port}` }),
      stop: (server) => server.stop(),
      exitedEarly: (server, port) =>
        new ExpertMeshError(
          Code.UNAVAILABLE,
          `redis-server on port ${port} exited early:\n${server.output()}`,
        ),
    });
    return running(child, port, url, dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function running(server: ServiceProcess, port: number, url: string, dir: string): RedisServer {
  let stopped: Promise<void> | undefined;
  return {
    port,
    url,
    stop() {
      stopped ??= (async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
