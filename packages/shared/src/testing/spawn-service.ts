/**
 * Runs a real service process for end-to-end tests (as SGLang's tests do): captures its output
 * line by line, waits on what it prints, and tears down its whole process tree. The child leads
 * its own process group (`detached`), so `stop()` signals the group and nothing is orphaned —
 * not even when the test process itself dies (an exit hook SIGKILLs every group still running).
 */
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { basename } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ExpertMeshError } from "../errors.ts";
import { ENV_PREFIX } from "../config/load-config.ts";

export interface SpawnServiceOptions {
  /** Added to the environment (undefined removes a variable). */
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
  /** Used in error messages; the command's basename by default. */
  name?: string;
  /**
   * Start from this process's environment; true by default. Inherited EXPERTMESH_* variables are
   * dropped either way, so a developer's shell settings cannot leak into (or break) a test.
   */
  inheritEnv?: boolean;
}

export interface OutputLine {
  stream: "stdout" | "stderr";
  text: string;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly name: string;
  readonly pid: number;
  /** Every line printed so far, both streams in arrival order. */
  readonly lines: readonly OutputLine[];
  /** Set once the process has exited. */
  readonly exit: ProcessExit | undefined;
  readonly exited: Promise<ProcessExit>;
  /** Resolves with the match of the first line (printed before or after the call) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` to the process itself (not its group). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM to the group, SIGKILL after `timeoutMs` (5 s by default); resolves once it has exited. */
  stop(options?: { timeoutMs?: number }): Promise<ProcessExit>;
  /** The captured output as text, for assertion messages. */
  output(): string;
}

const running = new Set<number>();
let exitHookInstalled = false;

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/**
 * Pids of the living (not zombie) processes in process group `pgid`, read from /proc (Linux).
 * A spawned service's pid is its group id, so `[]` after `stop()` means nothing was orphaned.
 */
export function liveGroupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "latin1");
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid pgrp …" — comm may hold spaces and parentheses, so split after the last ")".
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z" && state !== "X") pids.push(Number(entry));
  }
  return pids;
}

export function spawnService(
  cmd: string,
  args: readonly string[],
  options: SpawnServiceOptions = {},
): ServiceProcess {
  const name = options.name ?? basename(cmd);
  const env: Record<string, string> = {};
  if (options.inheritEnv ?? true) {
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith(ENV_PREFIX)) env[k] = v;
  }
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }

  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: OutputLine[] = [];
  const watchers = new Set<() => void>();
  let exit: ProcessExit | undefined;
  let spawnError: Error | undefined;
  // Output has ended (the 'close' event comes after the last line): only then can a wait fail early.
  let ended = false;
  const notify = (): void => {
    for (const w of watchers) w();
  };

  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("error", (err) => {
      spawnError = err;
      exit = { code: null, signal: null };
      ended = true;
      resolve(exit);
      notify();
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  }).finally(() => {
    if (child.pid !== undefined) running.delete(child.pid);
  });
  child.once("close", () => {
    ended = true;
    notify();
  });

  for (const stream of ["stdout", "stderr"] as const) {
    createInterface({ input: child[stream], crlfDelay: Infinity }).on("line", (text) => {
      lines.push({ stream, text });
      notify();
    });
  }
  if (child.pid !== undefined) {
    running.add(child.pid);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once("exit", () => {
        for (const pid of running) signalGroup(pid, "SIGKILL");
      });
    }
  }

  const output = (): string => lines.map((l) => `[${name} ${l.stream}] ${l.text}`).join("\n");
  const tail = (): string =>
    lines
      .slice(-30)
      .map((l) => `  [${l.stream}] ${l.text}`)
      .join("\n");

  return {
    name,
    pid: child.pid ?? -1,
    lines,
    get exit() {
      return exit;
    },
    exited,
    output,
    kill(signal) {
      if (exit === undefined) child.kill(signal);
    },
    waitForLine(pattern, timeoutMs = 10_000) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        let seen = 0;
        const check = (): void => {
          for (; seen < lines.length; seen++) {
            const m = lines[seen]?.text.match(pattern);
            if (m) return done(() => resolve(m));
          }
          if (ended) {
            const why =
              spawnError === undefined
                ? `exited (${JSON.stringify(exit)})`
                : `failed to start: ${spawnError.message}`;
            done(() =>
              reject(
                new ExpertMeshError(
                  Code.UNAVAILABLE,
                  `${name} ${why} before printing ${String(pattern)}; output:\n${tail()}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(
                new ExpertMeshError(
                  Code.DEADLINE_EXCEEDED,
                  `${name} printed no line matching ${String(pattern)} within ${timeoutMs} ms; output:\n${tail()}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const done = (settle: () => void): void => {
          clearTimeout(timer);
          watchers.delete(check);
          settle();
        };
        watchers.add(check);
        check();
      });
    },
    async stop({ timeoutMs = 5_000 } = {}) {
      if (child.pid === undefined) return exited;
      if (exit === undefined) {
        signalGroup(child.pid, "SIGTERM");
        const giveUp = new AbortController();
        const result = await Promise.race([
          exited,
          sleep(timeoutMs, undefined, { signal: giveUp.signal }).catch(() => undefined),
        ]);
        giveUp.abort();
        if (result === undefined) signalGroup(child.pid, "SIGKILL");
      }
      const result = await exited;
      // The leader is gone; anything it left behind in its group goes too.
      signalGroup(child.pid, "SIGKILL");
      return result;
    },
  };
}
