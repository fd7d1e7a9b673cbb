import { freePort } from "../process/free-port.ts";

/**
 * A TCP port that was free a moment ago (the OS picks it). Prefer listening on port 0 directly;
 * use this only for programs that must be told their port up front (child processes, redis-server).
 */
export const getFreePort: (host?: string) => Promise<number> = freePort;
