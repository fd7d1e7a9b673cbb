import { createServer } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP port that was free a moment ago (the OS picks it). Prefer listening on port 0 directly;
 * use this only for programs that must be told their port up front (child processes, redis-server).
 */
export async function getFreePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
