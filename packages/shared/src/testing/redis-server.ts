/**
 * A throwaway Redis for tests: Debian's `redis-server` on a free loopback port, no persistence,
 * ready once it answers PING.
 */
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { Code, ExpertMeshError } from "../errors.ts";
import { getFreePort } from "./free-port.ts";
import { spawnService } from "./spawn-service.ts";
import type { ServiceProcess } from "./spawn-service.ts";
import { waitUntil } from "./wait-until.ts";

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

const HOST = "127.0.0.1";

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** True when a Redis server on `port` answers PING with PONG. */
export function pingRedis(port: number, host = HOST, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = "";
    const socket = connect({ port, host });
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.on("error", () => finish(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
  });
}

export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<RedisServer> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      "redis-server is not on PATH; install it with `apt-get install redis-server`",
    );
  }
  const dir = await mkdtemp(join(tmpdir(), "expertmesh-redis-"));
  // getFreePort can race with another process taking the port: a server that exits early is retried.
  for (let attempt = 1; ; attempt++) {
    const port = await getFreePort(HOST);
    const server = spawnService(
      binary,
      [
        "--port",
        String(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        dir,
      ],
      { name: `redis-server:${port}` },
    );
    try {
      await waitUntil(
        async () => {
          if (server.exit !== undefined)
            throw new ExpertMeshError(Code.UNAVAILABLE, `exited early:\n${server.output()}`);
          return pingRedis(port);
        },
        { timeoutMs: options.timeoutMs ?? 10_000, what: `redis-server on port ${port} to answer PING` },
      );
    } catch (err) {
      const exitedEarly = server.exit !== undefined;
      await server.stop();
      if (exitedEarly && attempt < 3) continue;
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return running(server, port, dir);
  }
}

function running(server: ServiceProcess, port: number, dir: string): RedisServer {
  let stopped: Promise<void> | undefined;
  return {
    port,
    url: `redis://${HOST}:${port}`,
    stop() {
      stopped ??= (async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
