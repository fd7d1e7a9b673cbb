/**
 * One service process the launcher owns: spawned as the leader of its own process group with
 * exactly the EXPERTMESH_* variables it is given (inherited ones are dropped: services refuse
 * unknown ones), its output either streamed line by line with a `[name]` prefix or appended to
 * a log file (detached clusters), and stopped as a group: SIGTERM, SIGKILL after a timeout.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import {
  Code,
  ExpertMeshError,
  OwnedGroups,
  signalGroup,
  spawnGroupLeader,
  stopGroupLeader,
} from "@expertmesh/shared";
import type { ProcessExit } from "@expertmesh/shared";

export type { ProcessExit } from "@expertmesh/shared";

/** Where a process's stdout and stderr go. */
export type ProcessOutput =
  /** Each line to `write`, prefixed with `[name] ` (the foreground launcher's console). */
  | { kind: "lines"; write: (line: string) => void }
  /** Appended to a file (a detached cluster outlives the launcher). */
  | { kind: "file"; path: string };

export interface ServiceProcessOptions {
  /** Short name for logs and tables: "redis", "w0", "a1". */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The service's EXPERTMESH_* settings (and anything else to add). */
  readonly env: Readonly<Record<string, string>>;
  readonly output: ProcessOutput;
}

/** Lines kept for error messages. */
const TAIL_LINES = 40;

/** Groups this launcher still owns: SIGKILLed if the launcher exits without stopping them. */
const owned = new OwnedGroups();

/** SIGKILL to every group this launcher still owns (a second Ctrl-C, or a failed launch). */
export function killOwnedProcesses(): void {
  owned.killAll();
}

export class ServiceProcess {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<ProcessExit>;
  readonly #child: ChildProcess;
  readonly #output: ProcessOutput;
  readonly #tail: string[] = [];
  #exit: ProcessExit | undefined;
  #spawnError: Error | undefined;
  #stopping: Promise<ProcessExit> | undefined;

  constructor(options: ServiceProcessOptions) {
    this.name = options.name;
    this.#output = options.output;
    const fd = options.output.kind === "file" ? openSync(options.output.path, "a") : undefined;
    try {
      this.#child = spawnGroupLeader(options.command, options.args, {
        cwd: options.cwd,
        env: options.env,
        stdio: fd === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", fd, fd],
      });
    } finally {
      // The child holds its own copy of the descriptor.
      if (fd !== undefined) closeSync(fd);
    }
    this.pid = this.#child.pid ?? -1;
    if (this.pid > 0) owned.own(this.pid);
    this.exited = new Promise<ProcessExit>((resolve) => {
      this.#child.once("error", (err) => {
        this.#spawnError = err;
        this.#exit ??= { code: null, signal: null };
        resolve(this.#exit);
      });
      this.#child.once("exit", (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    }).finally(() => owned.release(this.pid));
    const out = options.output;
    if (out.kind === "lines") {
      for (const stream of [this.#child.stdout, this.#child.stderr]) {
        if (stream === null) continue;
        createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
          this.#tail.push(line);
          if (this.#tail.length > TAIL_LINES) this.#tail.shift();
          out.write(`[${this.name}] ${line}`);
        });
      }
    }
  }

  /** Set once the process has exited. */
  get exit(): ProcessExit | undefined {
    return this.#exit;
  }

  /** The last lines it printed (from the log file for file output), for error messages. */
  tail(): string {
    let lines = this.#tail;
    if (this.#output.kind === "file") {
      try {
        lines = readFileSync(this.#output.path, "utf8").split("\n").slice(-TAIL_LINES);
      } catch {
        lines = [];
      }
    }
    const why = this.#spawnError === undefined ? "" : `  (failed to start: ${this.#spawnError.message})\n`;
    return why + lines.map((l) => `  ${l}`).join("\n");
  }

  /** Why the process is no longer running, for an error message; undefined while it runs. */
  exitText(): string | undefined {
    const e = this.#exit;
    if (e === undefined) return undefined;
    return e.signal !== null ? `was killed by ${e.signal}` : `exited with code ${String(e.code)}`;
  }

  /** Lets the launcher exit while this process goes on (detached clusters). */
  release(): void {
    owned.release(this.pid);
    this.#child.unref();
  }

  /**
   * SIGTERM to the group (the service drains), SIGKILL after `timeoutMs`; then SIGKILL whatever
   * is left in the group. Resolves with the leader's exit.
   */
  stop(timeoutMs: number): Promise<ProcessExit> {
    this.#stopping ??=
      this.pid < 0
        ? this.exited
        : stopGroupLeader(this.pid, this.exited, { running: this.#exit === undefined, timeoutMs });
    return this.#stopping;
  }

  /** SIGKILL to the group now (a second Ctrl-C). */
  kill(): void {
    if (this.pid > 0) signalGroup(this.pid, "SIGKILL");
  }

  /** An UNAVAILABLE error saying this process died while `what`, with its last lines. */
  diedWhile(what: string): ExpertMeshError {
    return new ExpertMeshError(
      Code.UNAVAILABLE,
      `${this.name} ${this.exitText() ?? "stopped"} while ${what}; last output:\n${this.tail()}`,
    );
  }
}
