/**
 * `expertmesh inspect-cluster`: the golden protocol of `expertmesh inspect` (prefill, then greedy
 * decoding through the KV cache, capturing logits, routing and hidden states) with the model in
 * this process loaded WITHOUT routed experts: every MoE layer dispatches to real expert-worker
 * processes over gRPC (RemoteRoutedExperts). The workers are started here (`--workers N --nodes M`,
 * default placement from a file), or those of a running cluster (`--state-file`), or given
 * (`--worker-addresses` + `--placement`).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { RemoteRoutedExperts } from "@expertmesh/dispatch";
import { forcedTokensFromResult, inspectPrompts, loadModel, parsePromptsFile } from "@expertmesh/model";
import { PlacementStore, placementFromJSON, placementToJSON } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { WireDtype } from "@expertmesh/proto";
import { Code, ExpertMeshError, parseDuration } from "@expertmesh/shared";
import { Redis } from "ioredis";
import { parseCommandArgs, readJsonFile, seeHelp } from "../command-args.ts";
import { readClusterState } from "./cluster-state.ts";
import {
  defaultClusterPlacement,
  readModelConfig,
  startExpertWorkers,
  stopMembers,
} from "./local-cluster.ts";
import type { ClusterMember } from "./local-cluster.ts";

const HELP = `usage: expertmesh inspect-cluster --model DIR --prompts FILE --out FILE [workers] [options]

Runs every prompt of FILE through the checkpoint in DIR like 'expertmesh inspect' (prefill, then
greedy decoding for max_new_tokens steps; golden.json schema out), but with the routed experts
on expert-worker processes: this process loads the model without them and dispatches every MoE
layer's rows to the workers holding the chosen experts.

workers (one of):
  --workers N --nodes M      start N expert-workers here, w0..wN-1 dealt over nodes n0..nM-1
                             (default placement in a temporary file); stopped at the end
  --state-file FILE          the workers of a running 'expertmesh up' cluster (placement from its Redis)
  --worker-addresses LIST    w0=host:port,w1=host:port,... with --placement FILE (placement JSON)

options:
  --wire DTYPE         rows on the wire: float32 (default, exact) or bf16; sums come back the same way
  --teacher-force      feed each prompt's forced_tokens back (see 'expertmesh inspect --help')
  --forced-from FILE   teacher-force with a previous result file's greedy tokens
  --threads N          onnxruntime intra-op threads, here and in started workers (default 1)
  --ready-timeout DUR  how long started workers may take to become SERVING (default 120s)
  -h, --help           show this help`;

/** Workers to dispatch to, and how to let go of them afterwards. */
interface Workers {
  readonly placement: Placement;
  readonly addresses: ReadonlyMap<string, string>;
  release(): Promise<void>;
}

function parseAddresses(list: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")) {
    const m = /^([^=\s]+)=([^=\s]+:\d{1,5})$/.exec(entry);
    if (m === null) throw seeHelp(`--worker-addresses entry '${entry}' is not workerId=host:port`);
    out.set(m[1] as string, m[2] as string);
  }
  return out;
}

async function startedWorkers(
  modelDir: string,
  workers: number,
  nodes: number,
  threads: number,
  readyTimeoutMs: number,
): Promise<Workers> {
  const placement = defaultClusterPlacement(await readModelConfig(modelDir), workers, nodes);
  const dir = await mkdtemp(join(tmpdir(), "expertmesh-inspect-"));
  const placementFile = join(dir, "placement.json");
  await writeFile(placementFile, JSON.stringify(placementToJSON(placement)));
  let members: ClusterMember[];
  try {
    members = await startExpertWorkers({
      modelDir,
      host: "127.0.0.1",
      threads,
      logLevel: "warn",
      // Worker output goes to stderr, prefixed, so the result file and stdout stay clean.
      output: () => ({ kind: "lines", write: (line) => process.stderr.write(`${line}\n`) }),
      readyTimeoutMs,
      stopTimeoutMs: 10_000,
      placement,
      source: { placementFile },
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    placement,
    addresses: new Map(members.map((m) => [m.name, m.address])),
    release: async () => {
      await stopMembers([members], 10_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function clusterWorkers(stateFile: string): Promise<Workers> {
  const state = await readClusterState(stateFile);
  const redis = new Redis(state.redisUrl, { maxRetriesPerRequest: 3 });
  let placement: Placement | undefined;
  try {
    placement = await new PlacementStore(redis).current();
  } finally {
    await redis.quit();
  }
  if (placement === undefined)
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `the cluster's Redis (${state.redisUrl}) has no current placement`,
    );
  const addresses = new Map(
    state.members.filter((m) => m.role === "expert-worker").map((m) => [m.name, m.address]),
  );
  return { placement, addresses, release: () => Promise.resolve() };
}

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      model: { type: "string" },
      prompts: { type: "string" },
      out: { type: "string" },
      workers: { type: "string" },
      nodes: { type: "string" },
      "state-file": { type: "string" },
      "worker-addresses": { type: "string" },
      placement: { type: "string" },
      wire: { type: "string" },
      "teacher-force": { type: "boolean" },
      "forced-from": { type: "string" },
      threads: { type: "string" },
      "ready-timeout": { type: "string" },
    },
    HELP,
    seeHelp,
  );
  if (values === null) return;
  for (const required of ["model", "prompts", "out"] as const) {
    if (values[required] === undefined) throw seeHelp(`--${required} is required`);
  }
  const wire = values.wire ?? "float32";
  if (wire !== "float32" && wire !== "bf16") throw seeHelp(`--wire must be float32 or bf16, got ${wire}`);
  const dtype = wire === "float32" ? WireDtype.FLOAT32 : WireDtype.BF16;
  const threads = Number(values.threads ?? "1");
  if (!Number.isInteger(threads) || threads < 0)
    throw seeHelp(`--threads must be a non-negative integer, got ${values.threads}`);
  const readyTimeoutMs = parseDuration(values["ready-timeout"] ?? "120s");
  if (readyTimeoutMs === undefined)
    throw seeHelp(`--ready-timeout must be a duration like 60s, got ${values["ready-timeout"]}`);
  const sources = [
    values.workers !== undefined,
    values["state-file"] !== undefined,
    values["worker-addresses"] !== undefined,
  ].filter(Boolean).length;
  if (sources !== 1)
    throw seeHelp("give exactly one of --workers N, --state-file FILE and --worker-addresses LIST");

  const modelDir = resolve(values.model as string);
  const promptsPath = values.prompts as string;
  let prompts = parsePromptsFile(await readJsonFile(promptsPath, "prompts file"), promptsPath);
  if (values["forced-from"] !== undefined) {
    prompts = forcedTokensFromResult(
      prompts,
      await readJsonFile(values["forced-from"], "result file"),
      values["forced-from"],
    );
  }
  const teacherForce = values["teacher-force"] === true || values["forced-from"] !== undefined;

  let workers: Workers;
  if (values.workers !== undefined) {
    const n = Number(values.workers);
    const m = Number(values.nodes ?? Math.min(2, n));
    workers = await startedWorkers(modelDir, n, m, threads, readyTimeoutMs);
  } else if (values["state-file"] !== undefined) {
    workers = await clusterWorkers(resolve(values["state-file"]));
  } else {
    if (values.placement === undefined) throw seeHelp("--worker-addresses needs --placement FILE");
    const text = await readFile(values.placement, "utf8").catch((err: unknown) => {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, `cannot read --placement ${values.placement}`, {
        cause: err,
      });
    });
    workers = {
      placement: placementFromJSON(text),
      addresses: parseAddresses(values["worker-addresses"] as string),
      release: () => Promise.resolve(),
    };
  }

  try {
    const config = await readModelConfig(modelDir);
    let maxNodes = 0;
    const remote = new RemoteRoutedExperts({
      placement: workers.placement,
      addresses: workers.addresses,
      hiddenSize: config.hiddenSize,
      rowDtype: dtype,
      combineDtype: dtype,
      // A token reaching more than topk_group nodes fails the run: the placement invariant.
      strictNodeLimit: true,
      onNodesPerRow: (_layer, nodes) => {
        for (const n of nodes) if (n > maxNodes) maxNodes = n;
      },
    });
    try {
      await remote.waitForReady(readyTimeoutMs);
      const model = await loadModel(modelDir, {
        experts: "none",
        routedExperts: remote,
        threads,
        executionProvider: "cpu",
      });
      try {
        const report = await inspectPrompts(model, prompts, { teacherForce });
        await writeFile(values.out as string, JSON.stringify(report));
      } finally {
        await model.release();
      }
      const p = workers.placement;
      console.error(
        `inspect-cluster: ${prompts.length} prompts, ${p.workers.length} workers on ${p.nodes.length} nodes, wire ${wire}: ` +
          `${remote.stats.runs} dispatches, ${remote.stats.requests} worker requests, at most ${maxNodes} nodes per token (topk_group ${p.shape.topkGroup})`,
      );
    } finally {
      await remote.close();
    }
  } finally {
    await workers.release();
  }
}
