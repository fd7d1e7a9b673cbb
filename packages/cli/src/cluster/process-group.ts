/**
 * Process groups, the unit the launcher starts and stops: every service runs as the leader of its
 * own group, so stopping the group stops whatever the service spawned too, and a terminal's
 * Ctrl-C reaches only the launcher, which then stops the services in order.
 */
import { readFileSync, readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Sends `signal` to every process of group `pgid`; false when the group is gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

/** Pids of the living (not zombie) processes of group `pgid`, read from /proc (Linux). */
export function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "latin1");
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ")".
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z" && state !== "X") pids.push(Number(entry));
  }
  return pids;
}

/** The command line of `pid` (arguments joined by spaces); undefined when it is gone. */
export function commandLine(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").join(" ").trim();
  } catch {
    return undefined;
  }
}

/**
 * Stops a group that is not our child (the `down` command): SIGTERM, then SIGKILL after
 * `timeoutMs` if any member is still alive. Resolves once the group is empty.
 */
export async function stopGroup(pgid: number, timeoutMs: number): Promise<"stopped" | "killed" | "gone"> {
  if (groupMembers(pgid).length === 0) return "gone";
  signalGroup(pgid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (groupMembers(pgid).length === 0) return "stopped";
    await sleep(50);
  }
  signalGroup(pgid, "SIGKILL");
  while (groupMembers(pgid).length > 0) await sleep(20);
  return "killed";
}
