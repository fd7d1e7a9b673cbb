import { createServer } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP port that was free a moment ago (the OS picks it), for programs that must be told their
 * port up front (child processes, redis-server). Prefer listening on port 0 directly where you
 * can: a child that loses the race fails to bind, and its caller must report or retry it.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
