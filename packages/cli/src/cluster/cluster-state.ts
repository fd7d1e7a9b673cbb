/**
 * The state file of a running local cluster (`.expertmesh/cluster.json`): who runs where, so
 * that `expertmesh down` (or `inspect-cluster --state-file`) can find the processes later.
 */
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import type { ClusterMember, MemberRole } from "./local-cluster.ts";

export const CLUSTER_STATE_FORMAT = "expertmesh.cluster/v1";

export interface ClusterStateMember {
  readonly name: string;
  readonly role: MemberRole;
  /** Process-group leader. */
  readonly pid: number;
  readonly address: string;
  readonly metricsPort: number | null;
  readonly node: string | null;
  /** Its log file (detached clusters), else null. */
  readonly log: string | null;
}

export interface ClusterState {
  readonly format: typeof CLUSTER_STATE_FORMAT;
  /** The `expertmesh up` process; it stops the cluster itself unless detached. */
  readonly launcherPid: number;
  readonly detached: boolean;
  readonly startedAt: string;
  readonly modelDir: string;
  readonly wire: string;
  readonly redisUrl: string;
  readonly placementVersion: number;
  readonly members: readonly ClusterStateMember[];
}

export function stateMember(m: ClusterMember, log: string | null): ClusterStateMember {
  return {
    name: m.name,
    role: m.role,
    pid: m.process.pid,
    address: m.address,
    metricsPort: m.metricsPort ?? null,
    node: m.node ?? null,
    log,
  };
}

/** Written to a temporary name and renamed, so a reader never sees half a file. */
export async function writeClusterState(path: string, state: ClusterState): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(tmp, path);
}

export async function readClusterState(path: string): Promise<ClusterState> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new ExpertMeshError(
        Code.NOT_FOUND,
        `no cluster state at ${path}: is a cluster running (expertmesh up)?`,
      );
    }
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `cannot read cluster state ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let state: unknown;
  try {
    state = JSON.parse(text);
  } catch (err) {
    throw new ExpertMeshError(Code.FAILED_PRECONDITION, `cluster state ${path} is not valid JSON`, {
      cause: err,
    });
  }
  const s = state as Partial<ClusterState> | null;
  if (
    s === null ||
    typeof s !== "object" ||
    s.format !== CLUSTER_STATE_FORMAT ||
    !Array.isArray(s.members) ||
    typeof s.launcherPid !== "number"
  ) {
    throw new ExpertMeshError(
      Code.FAILED_PRECONDITION,
      `${path} is not an ${CLUSTER_STATE_FORMAT} cluster state file`,
    );
  }
  return s as ClusterState;
}

export async function removeClusterState(path: string): Promise<void> {
  await rm(path, { force: true });
}
