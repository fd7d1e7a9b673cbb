/**
 * Debian's `redis-server` from PATH on a free loopback port, no persistence, ready once it
 * answers PING. The process itself is the caller's (the launcher's ServiceProcess, a test's
 * spawnService), so this takes how to spawn, describe and stop it.
 */
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { Code, ExpertMeshError } from "../errors.ts";
import { freePort } from "./free-port.ts";
import type { ProcessExit } from "./process-group.ts";

const HOST = "127.0.0.1";

/** The first executable `command` on PATH; undefined when there is none. */
export function findOnPath(command: string): string | undefined {
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

/** True when a Redis server at host:port answers PING with PONG. */
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

/** What startRedisServerProcess needs of the caller's process handle. */
export interface RedisServerChild {
  /** Set once the process has exited. */
  readonly exit: ProcessExit | undefined;
  readonly exited: Promise<unknown>;
}

export interface StartRedisServerProcessOptions<P extends RedisServerChild> {
  /** Working directory (created if missing); the server writes nothing there: no RDB, no AOF. */
  readonly dir: string;
  /** How long to wait for PONG, per attempt. */
  readonly timeoutMs: number;
  /** More redis-server arguments, e.g. ["--loglevel", "warning"]. */
  readonly extraArgs?: readonly string[];
  /**
   * Ports to try: freePort can race with another process taking the port, and a server that
   * exits before answering PING is then retried on a new one. 1 by default (no retry).
   */
  readonly attempts?: number;
  /** Starts `binary args` (listening on `port`). */
  spawn(binary: string, args: readonly string[], port: number): P;
  /** Stops a server that failed to start (or reaps one that exited). */
  stop(child: P): Promise<unknown>;
  /** The error for a server that exited before answering PING. */
  exitedEarly(child: P, port: number): Error;
}

export interface RedisServerProcess<P> {
  readonly child: P;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
}

export async function startRedisServerProcess<P extends RedisServerChild>(
  options: StartRedisServerProcessOptions<P>,
): Promise<RedisServerProcess<P>> {
  const binary = findOnPath("redis-server");
  if (binary === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      "redis-server is not on PATH; install it with `apt-get install redis-server`",
    );
  }
  await mkdir(options.dir, { recursive: true });
  const attempts = options.attempts ?? 1;
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(HOST);
    const args = [
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
      options.dir,
      ...(options.extraArgs ?? []),
    ];
    const child = options.spawn(binary, args, port);
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      if (await pingRedis(port)) return { child, port, url: `redis://${HOST}:${port}` };
      if (child.exit !== undefined) {
        await options.stop(child);
        if (attempt < attempts) break;
        throw options.exitedEarly(child, port);
      }
      if (Date.now() >= deadline) {
        await options.stop(child);
        throw new ExpertMeshError(
          Code.DEADLINE_EXCEEDED,
          `redis-server on port ${port} did not answer PING within ${options.timeoutMs} ms`,
        );
      }
      await Promise.race([new Promise((resolve) => setTimeout(resolve, 50)), child.exited]);
    }
  }
}
