/**
 * `expertmesh down`: stop the cluster a state file lists (see `expertmesh up`). A foreground
 * launcher is asked to stop its cluster itself (SIGTERM); then every member's process group
 * still alive is stopped — attention nodes, then workers, then Redis — SIGTERM first, SIGKILL
 * after the timeout. A pid that now runs something else is left alone.
 */
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ExpertMeshError, parseDuration } from "@expertmesh/shared";
import { parseCommandArgs, seeHelp } from "../command-args.ts";
import { readClusterState, removeClusterState } from "../cluster/cluster-state.ts";
import type { ClusterStateMember } from "../cluster/cluster-state.ts";
import type { MemberRole } from "../cluster/local-cluster.ts";
import { commandLine, groupMembers, stopGroup } from "../cluster/process-group.ts";
import { workDir } from "../cluster/repo-paths.ts";

const HELP = `usage: expertmesh down [options]

Stops the local cluster started by 'expertmesh up' (attention nodes drain first, then workers,
then Redis) and removes its state file.

options:
  --state-file FILE    the cluster's state file (default .expertmesh/cluster.json)
  --timeout DUR        how long each process may take to exit before SIGKILL (default 20s)
  -h, --help           show this help`;

/** What a member's command line must contain for its pid to still be that member. */
const SIGNATURE: Readonly<Record<MemberRole, string>> = {
  redis: "redis-server",
  "expert-worker": "services/expert-worker/src/main.ts",
  attention: "services/attention/src/main.ts",
  router: "services/router/src/main.ts",
};

const ORDER: readonly MemberRole[] = ["router", "attention", "expert-worker", "redis"];

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      "state-file": { type: "string" },
      timeout: { type: "string" },
    },
    HELP,
    seeHelp,
  );
  if (values === null) return;
  const timeoutMs = parseDuration(values.timeout ?? "20s");
  if (timeoutMs === undefined)
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `--timeout must be a duration like 10s, got ${values.timeout}`,
    );
  const stateFile = resolve(values["state-file"] ?? join(workDir(), "cluster.json"));
  const state = await readClusterState(stateFile);

  if (
    !state.detached &&
    isAlive(state.launcherPid) &&
    (commandLine(state.launcherPid) ?? "").includes(" up")
  ) {
    // The foreground launcher stops its cluster in order and removes the state file.
    console.log(`asking the launcher (pid ${state.launcherPid}) to stop its cluster`);
    process.kill(state.launcherPid, "SIGTERM");
    const deadline = Date.now() + timeoutMs * 3;
    while (isAlive(state.launcherPid) && Date.now() < deadline) await sleep(100);
  }

  for (const role of ORDER) {
    const members = state.members.filter((m) => m.role === role);
    await Promise.all(members.map((m) => stopMember(m, timeoutMs)));
  }
  await removeClusterState(stateFile);
  console.log("cluster stopped");
}

async function stopMember(m: ClusterStateMember, timeoutMs: number): Promise<void> {
  if (groupMembers(m.pid).length === 0) return;
  const cmd = commandLine(m.pid);
  if (cmd !== undefined && !cmd.includes(SIGNATURE[m.role])) {
    console.error(`${m.name}: pid ${m.pid} now runs '${cmd}', not a ${m.role}: left alone`);
    return;
  }
  const how = await stopGroup(m.pid, timeoutMs);
  console.log(`${m.name} (pid ${m.pid}) ${how === "killed" ? "killed after the timeout" : "stopped"}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
