/**
 * Where the launcher finds the services it starts. The workspace is source-first: a service runs
 * as `node --import tsx services/<name>/src/main.ts` from the repository root.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (packages/cli/src/cluster → ../../../..). */
export const REPO_ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../../..");

export type ServiceName = "attention" | "expert-worker" | "router";

/** The node arguments that run a service's entry point (cwd: REPO_ROOT). */
export function serviceArgs(service: ServiceName): string[] {
  return ["--import", "tsx", `services/${service}/src/main.ts`];
}

/** The launcher's working directory for state, logs and generated models: `<cwd>/.expertmesh`. */
export function workDir(cwd = process.cwd()): string {
  return resolve(cwd, ".expertmesh");
}
