/**
 * Measured, not assumed: loading a whole checkpoint as float32 must not hold a second copy of
 * the weights. A child process loads the bench preset (267 M parameters, 1.07 GB as float32)
 * and reports its peak RSS.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { writeSyntheticCheckpoint } from "../synthetic/write-synthetic-checkpoint.ts";
import { tempDir } from "./checkpoint-test-helpers.ts";
import type { TempDir } from "./checkpoint-test-helpers.ts";

const CHILD = fileURLToPath(new URL("./checkpoint-memory.child.ts", import.meta.url));
const MB = 1024 * 1024;

interface ChildReport {
  tensors: number;
  float32Bytes: number;
  maxRssBytes: number;
  loadMs: number;
}

async function measure(dir: string, mode: "--baseline" | "--tensors" | "--model"): Promise<ChildReport> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", CHILD, dir, mode], {
    maxBuffer: MB,
  });
  return JSON.parse(stdout) as ChildReport;
}

let tmp: TempDir;
let dir: string;
before(async () => {
  tmp = await tempDir("expertmesh-mem-");
  dir = join(tmp.path, "bench");
  await writeSyntheticCheckpoint({ preset: "bench", seed: 1, outDir: dir });
});
after(async () => {
  await tmp.remove();
});

test("loading every bench tensor as float32 peaks below float32 size × 1.15 + 150 MB", async (t) => {
  const base = await measure(dir, "--baseline");
  const full = await measure(dir, "--tensors");
  t.diagnostic(
    `float32 weights ${(full.float32Bytes / MB).toFixed(0)} MiB, peak RSS ${(full.maxRssBytes / MB).toFixed(0)} MiB ` +
      `(baseline ${(base.maxRssBytes / MB).toFixed(0)} MiB), load ${full.loadMs} ms`,
  );
  assert.equal(full.float32Bytes, 266_708_608 * 4); // every parameter of perf-v3
  assert.ok(full.maxRssBytes < full.float32Bytes * 1.15 + 150 * MB, `peak RSS ${full.maxRssBytes} bytes`);
  // The overhead beyond the weights themselves is what a second copy would show up in.
  assert.ok(full.maxRssBytes - base.maxRssBytes < full.float32Bytes * 1.1, "no second copy of the weights");
});

test("loading the runnable bench model (loadModel) peaks below float32 size × 1.15 + 150 MB", async (t) => {
  const full = await measure(dir, "--model");
  t.diagnostic(
    `float32 weights ${(full.float32Bytes / MB).toFixed(0)} MiB, peak RSS ${(full.maxRssBytes / MB).toFixed(0)} MiB, load ${full.loadMs} ms`,
  );
  assert.equal(full.float32Bytes, 266_708_608 * 4);
  assert.ok(full.maxRssBytes < full.float32Bytes * 1.15 + 150 * MB, `peak RSS ${full.maxRssBytes} bytes`);
});
