export { freePort } from "./free-port.ts";
export {
  OwnedGroups,
  commandLine,
  groupMembers,
  signalGroup,
  stopGroup,
  stopGroupLeader,
} from "./process-group.ts";
export type { ProcessExit } from "./process-group.ts";
export { childEnv, spawnGroupLeader } from "./spawn-group-leader.ts";
export type { SpawnGroupLeaderOptions } from "./spawn-group-leader.ts";
export { findOnPath, pingRedis, startRedisServerProcess } from "./redis-server.ts";
export type { RedisServerChild, RedisServerProcess, StartRedisServerProcessOptions } from "./redis-server.ts";
