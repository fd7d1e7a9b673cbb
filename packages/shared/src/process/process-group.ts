/**
 * Process groups, the unit ExpertMesh starts and stops services in: every service runs as the
 * leader of its own group (spawned `detached`), so stopping the group stops whatever the service
 * spawned too, and a terminal's Ctrl-C reaches only the parent, which then stops them in order.
 */
import { readFileSync, readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

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

/**
 * Pids of the living (not zombie) processes of group `pgid`, read from /proc (Linux). A spawned
 * group leader's pid is its group id, so `[]` after stopping it means nothing was orphaned.
 */
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
 * Stops a group that is not our child (e.g. a detached cluster's, from another launcher):
 * SIGTERM, then SIGKILL after `timeoutMs` if any member is still alive. Resolves once the group
 * is empty.
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

/**
 * Stops the group led by our child `pgid` whose exit `exited` reports: SIGTERM to the group
 * (the service drains) while it is `running`, SIGKILL after `timeoutMs`; once the leader is gone,
 * SIGKILL whatever it left behind in its group. Resolves with the leader's exit.
 */
export async function stopGroupLeader<T>(
  pgid: number,
  exited: Promise<T>,
  options: { readonly running: boolean; readonly timeoutMs: number },
): Promise<T> {
  if (options.running) {
    signalGroup(pgid, "SIGTERM");
    const giveUp = new AbortController();
    const done = await Promise.race([
      exited.then(() => true),
      sleep(options.timeoutMs, undefined, { signal: giveUp.signal }).catch(() => undefined),
    ]);
    giveUp.abort();
    if (done === undefined) signalGroup(pgid, "SIGKILL");
  }
  const exit = await exited;
  signalGroup(pgid, "SIGKILL");
  return exit;
}

/**
 * Groups a process owns: each one still registered is SIGKILLed if the process exits without
 * stopping it (a crashed launcher or test must not leave services running).
 */
export class OwnedGroups {
  readonly #pgids = new Set<number>();
  #exitHookInstalled = false;

  own(pgid: number): void {
    this.#pgids.add(pgid);
    if (this.#exitHookInstalled) return;
    this.#exitHookInstalled = true;
    process.once("exit", () => this.killAll());
  }

  /** The group stopped, or is meant to outlive us. */
  release(pgid: number): void {
    this.#pgids.delete(pgid);
  }

  /** SIGKILL to every group still owned. */
  killAll(): void {
    for (const pgid of this.#pgids) signalGroup(pgid, "SIGKILL");
  }
}
