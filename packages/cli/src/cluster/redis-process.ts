/**
 * The local cluster's Redis: Debian's `redis-server` from PATH on a free loopback port, no
 * persistence, ready once it answers PING.
 */
import { accessSync, constants as fsConstants } from "node:fs";
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { freePort } from "./free-port.ts";
import { ServiceProcess } from "./service-process.ts";
import type { ProcessOutput } from "./service-process.ts";

const HOST = "127.0.0.1";

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
  const binary = findOnPath("redis-server");
  if (binary === undefined) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      "redis-server is not on PATH; install it with `apt-get install redis-server`",
    );
  }
  await mkdir(options.dir, { recursive: true });
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
    "--loglevel",
    "warning",
  ];
  const proc = new ServiceProcess({
    name: "redis",
    command: binary,
    args,
    cwd: options.dir,
    env: {},
    output: options.output,
  });
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await pingRedis(port)) return { process: proc, port, url: `redis://${HOST}:${port}` };
    if (proc.exit !== undefined) throw proc.diedWhile(`starting on port ${port}`);
    if (Date.now() >= deadline) {
      await proc.stop(1_000);
      throw new ExpertMeshError(
        Code.DEADLINE_EXCEEDED,
        `redis-server on port ${port} did not answer PING within ${options.timeoutMs} ms`,
      );
    }
    await Promise.race([new Promise((resolve) => setTimeout(resolve, 50)), proc.exited]);
  }
}
