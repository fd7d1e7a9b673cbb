/**
 * `expertmesh up`: start a whole cluster on this machine — Redis, the default placement, N
 * expert-workers on M nodes and D attention nodes — as real processes, wait until each one's
 * gRPC health check says SERVING, print where everything listens, then stream their logs until
 * Ctrl-C/SIGTERM stops them all. `--detach` leaves them running (logs to files, pids in the
 * state file) for `expertmesh down`.
 */
import { mkdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { Code, ExpertMeshError, parseDuration } from "@expertmesh/shared";
import { formatClusterTable } from "../cluster/cluster-table.ts";
import { parseCommandArgs, seeHelp } from "../command-args.ts";
import {
  readClusterState,
  removeClusterState,
  stateMember,
  writeClusterState,
  CLUSTER_STATE_FORMAT,
} from "../cluster/cluster-state.ts";
import type { ClusterState } from "../cluster/cluster-state.ts";
import { launchCluster, logFileOutput, routerEndpoints } from "../cluster/local-cluster.ts";
import type {
  ClusterMember,
  CombineDtypeName,
  LocalCluster,
  WireDtypeName,
} from "../cluster/local-cluster.ts";
import { groupMembers } from "../cluster/process-group.ts";
import { workDir } from "../cluster/repo-paths.ts";
import { killOwnedProcesses } from "../cluster/service-process.ts";
import type { ProcessOutput } from "../cluster/service-process.ts";
import { ensureTinyModel } from "../cluster/tiny-model.ts";

const HELP = `usage: expertmesh up [--model DIR | --preset tiny] [options]

Starts Redis (redis-server from PATH), publishes the default placement (workers w0..wN-1 dealt
round-robin over nodes n0..nM-1, every expert group on one node), starts N expert-workers, D
attention nodes and the router, waits for their gRPC health checks, and prints where each listens
(the router's gRPC and OpenAI HTTP addresses last). Logs stream with a [name] prefix; Ctrl-C
(SIGINT) or SIGTERM stops everything (the router and attention nodes drain first).

options:
  --model DIR          checkpoint directory (config.json + safetensors)
  --preset tiny        a synthetic tiny checkpoint, written once under .expertmesh/models/tiny
  --attention D        attention nodes (default 1)
  --workers N          expert-workers (default 4)
  --nodes M            routing nodes the workers are spread over (default min(2, N))
  --wire DTYPE         dispatch row encoding: bf16 (default), float32 (exact) or fp8
  --combine DTYPE      combine encoding: bf16 or float32 (default: float32 with --wire float32, else bf16)
  --threads N          onnxruntime intra-op threads per process (default 1)
  --load-window DUR    workers' load-accounting window (default 10s)
  --kv-cache-mb N      KV cache per attention node, MiB (default: the node's, 256)
  --log-level LEVEL    services' log level (default info)
  --ready-timeout DUR  how long each process may take to become SERVING (default 120s)
  --state-file FILE    where the cluster's pids and addresses are written (default .expertmesh/cluster.json)
  --detach             leave the cluster running in the background (logs in .expertmesh/logs)
  -h, --help           show this help`;

const WIRES: readonly WireDtypeName[] = ["bf16", "float32", "fp8"];
const COMBINES: readonly CombineDtypeName[] = ["bf16", "float32"];

function positiveInt(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw seeHelp(`${flag} must be a positive integer, got ${value}`);
  return n;
}

function duration(value: string | undefined, flag: string, fallback: string): number {
  const ms = parseDuration(value ?? fallback);
  if (ms === undefined) throw seeHelp(`${flag} must be a duration like 500ms, 10s, 2m; got ${value}`);
  return ms;
}

/** Refuses to start over a cluster that is still running. */
async function checkNoLiveCluster(stateFile: string): Promise<void> {
  let state: ClusterState;
  try {
    state = await readClusterState(stateFile);
  } catch {
    return; // none, or unreadable: nothing to protect
  }
  const alive = state.members.filter((m) => groupMembers(m.pid).length > 0);
  if (alive.length > 0) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `a cluster is already running (${alive.map((m) => m.name).join(", ")}; state in ${stateFile}): stop it with 'expertmesh down' first`,
    );
  }
}

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      model: { type: "string" },
      preset: { type: "string" },
      attention: { type: "string" },
      workers: { type: "string" },
      nodes: { type: "string" },
      wire: { type: "string" },
      combine: { type: "string" },
      threads: { type: "string" },
      "load-window": { type: "string" },
      "kv-cache-mb": { type: "string" },
      "log-level": { type: "string" },
      "ready-timeout": { type: "string" },
      "state-file": { type: "string" },
      detach: { type: "boolean" },
    },
    HELP,
    seeHelp,
  );
  if (values === null) return;
  if ((values.model === undefined) === (values.preset === undefined))
    throw seeHelp("give exactly one of --model DIR and --preset tiny");
  if (values.preset !== undefined && values.preset !== "tiny")
    throw seeHelp(`unknown preset '${values.preset}' (only tiny)`);
  const wire = (values.wire ?? "bf16") as WireDtypeName;
  if (!WIRES.includes(wire)) throw seeHelp(`--wire must be one of ${WIRES.join(", ")}, got ${values.wire}`);
  const combine = (values.combine ?? (wire === "float32" ? "float32" : "bf16")) as CombineDtypeName;
  if (!COMBINES.includes(combine))
    throw seeHelp(`--combine must be one of ${COMBINES.join(", ")}, got ${values.combine}`);
  const workers = positiveInt(values.workers, "--workers", 4);
  const nodes = positiveInt(values.nodes, "--nodes", Math.min(2, workers));
  const attention = positiveInt(values.attention, "--attention", 1);
  const threads = positiveInt(values.threads, "--threads", 1);
  const kvCacheMb =
    values["kv-cache-mb"] === undefined ? undefined : positiveInt(values["kv-cache-mb"], "--kv-cache-mb", 1);
  const loadWindow = values["load-window"] ?? "10s";
  duration(loadWindow, "--load-window", "10s");
  const readyTimeoutMs = duration(values["ready-timeout"], "--ready-timeout", "120s");
  const detach = values.detach === true;

  const dir = workDir();
  const stateFile = resolve(values["state-file"] ?? join(dir, "cluster.json"));
  await mkdir(dir, { recursive: true });
  await checkNoLiveCluster(stateFile);

  let modelDir: string;
  if (values.preset === "tiny") {
    const tiny = await ensureTinyModel(join(dir, "models", "tiny"));
    if (tiny.written) console.log(`wrote the tiny preset checkpoint to ${tiny.dir}`);
    modelDir = tiny.dir;
  } else {
    modelDir = resolve(values.model as string);
  }

  const logDir = join(dir, "logs");
  let output: (name: string) => ProcessOutput;
  if (detach) {
    await rm(logDir, { recursive: true, force: true });
    await mkdir(logDir, { recursive: true });
    output = logFileOutput(logDir);
  } else {
    output = () => ({ kind: "lines", write: (line) => process.stdout.write(`${line}\n`) });
  }

  // A signal while processes are starting: kill what has started and leave.
  const onEarlySignal = (): void => {
    killOwnedProcesses();
    process.exit(130);
  };
  const removeEarly = onStopSignals(onEarlySignal);
  let cluster: LocalCluster;
  try {
    cluster = await launchCluster({
      modelDir,
      host: "127.0.0.1",
      threads,
      logLevel: values["log-level"] ?? "info",
      output,
      readyTimeoutMs,
      stopTimeoutMs: 15_000,
      attention,
      workers,
      nodes,
      wire,
      combine,
      loadWindow,
      redisDir: join(dir, "redis"),
      ...(kvCacheMb === undefined ? {} : { kvCacheMb }),
    });
  } finally {
    removeEarly();
  }

  const state: ClusterState = {
    format: CLUSTER_STATE_FORMAT,
    launcherPid: process.pid,
    detached: detach,
    startedAt: new Date().toISOString(),
    modelDir,
    wire,
    redisUrl: cluster.redisUrl,
    placementVersion: cluster.placement.version,
    members: cluster.members.map((m) => stateMember(m, detach ? join(logDir, `${m.name}.log`) : null)),
  };
  await writeClusterState(stateFile, state);
  console.log(formatClusterTable(cluster.members));
  const router = routerEndpoints(cluster.router);
  console.log(`router: grpc=${router.grpc} http=${router.http} (OpenAI API: ${router.http}/v1)`);
  console.log(firstRequest(router.http, basename(modelDir), existsSync(join(modelDir, "tokenizer.json"))));
  const summary = `${attention} attention, ${workers} workers on ${nodes} nodes, placement v${cluster.placement.version}, wire ${wire}/${combine}`;
  if (detach) {
    for (const m of cluster.members) m.process.release();
    console.log(
      `cluster ready (detached): ${summary}\nstate: ${stateFile}\nlogs: ${logDir}\nstop it with: expertmesh down${values["state-file"] === undefined ? "" : ` --state-file ${stateFile}`}`,
    );
    return;
  }
  console.log(`cluster ready: ${summary} (Ctrl-C stops everything)`);
  await runUntilStopped(cluster, stateFile);
}

/** A first request to copy: text when the model has a tokenizer, token ids otherwise. */
function firstRequest(http: string, model: string, text: boolean): string {
  const prompt = text ? JSON.stringify("The capital of France is") : "[1, 2, 3, 4]";
  const body = `{"model": ${JSON.stringify(model)}, "prompt": ${prompt}, "max_tokens": 16, "temperature": 0}`;
  return `first request:\n  curl -s ${http}/v1/completions -H 'content-type: application/json' -d '${body}'`;
}

/** Calls `handler` on every SIGINT and SIGTERM until the returned function is called. */
function onStopSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.removeListener("SIGINT", handler);
    process.removeListener("SIGTERM", handler);
  };
}

/** Streams logs until a signal (clean stop) or a member's death (stop the rest, fail). */
async function runUntilStopped(cluster: LocalCluster, stateFile: string): Promise<void> {
  let signals = 0;
  let wake: (reason: string) => void = () => {};
  const signalled = new Promise<string>((resolve) => (wake = resolve));
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      console.error("second signal: killing every process now");
      cluster.kill();
      return;
    }
    wake(signal);
  };
  const removeOnSignal = onStopSignals(onSignal);
  try {
    const first = await Promise.race([signalled, cluster.firstExit]);
    let died: ClusterMember | undefined;
    if (typeof first === "string") {
      console.log(`${first}: stopping the cluster (the router and attention nodes drain first)…`);
    } else {
      died = first;
      console.error(`${died.name} ${died.process.exitText() ?? "exited"}: stopping the cluster…`);
    }
    const exits = await cluster.stop();
    await removeClusterState(stateFile);
    if (died !== undefined) throw died.process.diedWhile("the cluster was running");
    const unclean = exits.filter(({ exit }) => exit.code !== 0);
    if (unclean.length === 0) console.log("cluster stopped: every process exited cleanly");
    else
      console.error(
        `cluster stopped; not cleanly: ${unclean.map(({ member, exit }) => `${member.name} (${exit.signal ?? `code ${String(exit.code)}`})`).join(", ")}`,
      );
  } finally {
    removeOnSignal();
  }
}
