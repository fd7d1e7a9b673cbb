/** Locating the shared test fixtures: `<repo>/../shared/fixtures`, the same locally and in CI. */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** <repo>/../shared */
export const SHARED_DIR = resolve(here, "../../../../shared");
export const FIXTURES_DIR = join(SHARED_DIR, "fixtures");
export const COMPARE_GOLDEN = join(SHARED_DIR, "tools", "compare_golden.py");
export const FIXTURE_NAMES = ["tiny-v3", "tiny-v3-fp8"] as const;

export function fixtureDir(name: string): string {
  return join(FIXTURES_DIR, name);
}

export interface GoldenRoutingLayer {
  layer: number;
  experts: number[][];
  weights: number[][];
  groups: number[][];
  expert_margin: number[];
  group_margin: number[];
  gate_input: number[][];
}

export interface GoldenPrompt {
  name: string;
  tokens: number[];
  greedy: { generated: number[] };
  routing: { layers: GoldenRoutingLayer[] };
  hidden_states: number[][][];
}

export interface Golden {
  derived: { softmax_scale: number; rope_inv_freq: number[]; yarn_correction_range: [number, number] };
  prompts: GoldenPrompt[];
}

/** Tests may read golden.json (product code never does). */
export function readGolden(name: string): Golden {
  return JSON.parse(readFileSync(join(fixtureDir(name), "golden.json"), "utf8")) as Golden;
}
