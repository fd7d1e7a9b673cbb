/**
 * `--preset tiny`: a synthetic checkpoint of the tiny-v3 fixture's shape, written once under
 * `.expertmesh/models/tiny` and reused. A directory counts as written only when its marker is
 * there (it is written under a temporary name and renamed into place).
 */
import { access, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeSyntheticCheckpoint } from "@expertmesh/model";

const MARKER = "expertmesh-preset.json";

export async function ensureTinyModel(dir: string, seed = 1): Promise<{ dir: string; written: boolean }> {
  try {
    await access(join(dir, MARKER));
    return { dir, written: false };
  } catch {
    // not written yet (or half-written): write it
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await writeSyntheticCheckpoint({ preset: "tiny", seed, outDir: tmp });
  await writeFile(join(tmp, MARKER), `${JSON.stringify({ preset: "tiny", seed })}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return { dir, written: true };
}
