/**
 * Runs a real service process for end-to-end tests (as SGLang's tests do): captures its output
 * line by line, waits on what it prints, and tears down its whole process tree. The child leads
 * its own process group (`detached`), so `stop()` signals the group and nothing is orphaned —
 * not even when the test process itself dies (an exit hook SIGKILLs every group still running).
 */
import { basename } from "node:path";
import { createInterface } from "node:readline";
import { Code, ExpertMeshError } from "../errors.ts";
import { OwnedGroups, groupMembers, stopGroupLeader } from "../process/process-group.ts";
import type { ProcessExit } from "../process/process-group.ts";
import { spawnGroupLeader } from "../process/spawn-group-leader.ts";

export type { ProcessExit };

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

/** Every service a test started and has not seen exit: SIGKILLed if the test process dies. */
const running = new OwnedGroups();

/**
 * Pids of the living (not zombie) processes in process group `pgid`, read from /proc (Linux).
 * A spawned service's pid is its group id, so `[]` after `stop()` means nothing was orphaned.
 */
export const liveGroupMembers: (pgid: number) => number[] = groupMembers;

export function spawnService(
  cmd: string,
  args: readonly string[],
  options: SpawnServiceOptions = {},
): ServiceProcess {
  const name = options.name ?? basename(cmd);
  const child = spawnGroupLeader(cmd, args, {
    cwd: options.cwd,
    env: options.env,
    inheritEnv: options.inheritEnv,
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
    if (child.pid !== undefined) running.release(child.pid);
  });
  child.once("close", () => {
    ended = true;
    notify();
  });

  for (const stream of ["stdout", "stderr"] as const) {
    const input = child[stream];
    if (input === null) continue; // never: both are pipes
    createInterface({ input, crlfDelay: Infinity }).on("line", (text) => {
      lines.push({ stream, text });
      notify();
    });
  }
  if (child.pid !== undefined) running.own(child.pid);

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
    stop({ timeoutMs = 5_000 } = {}) {
      if (child.pid === undefined) return exited;
      return stopGroupLeader(child.pid, exited, { running: exit === undefined, timeoutMs });
    },
  };
}
