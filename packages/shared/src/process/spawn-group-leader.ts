/**
 * Spawns a service as the leader of its own process group (`detached`), with a clean
 * environment: inherited EXPERTMESH_* variables are always dropped, so a developer's shell
 * settings cannot leak into a service (services refuse unknown ones) and only what the caller
 * adds reaches it.
 */
import { spawn } from "node:child_process";
import type { ChildProcess, StdioOptions } from "node:child_process";
import { ENV_PREFIX } from "../config/load-config.ts";

export interface SpawnGroupLeaderOptions {
  /** Added to the environment (undefined removes a variable). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
  /** Start from this process's environment (less EXPERTMESH_*); true by default. */
  readonly inheritEnv?: boolean;
  /** ["ignore", "pipe", "pipe"] by default. */
  readonly stdio?: StdioOptions;
}

/** The environment a spawned service gets (see the module comment). */
export function childEnv(
  add: Readonly<Record<string, string | undefined>> = {},
  inheritEnv = true,
): Record<string, string> {
  const env: Record<string, string> = {};
  if (inheritEnv) {
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith(ENV_PREFIX)) env[k] = v;
  }
  for (const [k, v] of Object.entries(add)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** The child's pid is its process group id (undefined when it failed to start: see 'error'). */
export function spawnGroupLeader(
  command: string,
  args: readonly string[],
  options: SpawnGroupLeaderOptions = {},
): ChildProcess {
  return spawn(command, args, {
    cwd: options.cwd,
    env: childEnv(options.env, options.inheritEnv ?? true),
    detached: true,
    stdio: options.stdio ?? ["ignore", "pipe", "pipe"],
  });
}
