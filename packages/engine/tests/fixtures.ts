import { fileURLToPath } from "node:url";
import { SeededRng } from "../src/seeded-rng.ts";

/** The tiny-v3 checkpoint: shared/fixtures/tiny-v3 next to the repository root. */
export const TINY_V3_DIR = fileURLToPath(new URL("../../../../shared/fixtures/tiny-v3", import.meta.url));

/** A reproducible prompt of `length` token ids in [2, vocab) (0/1 are BOS/EOS). */
export function makePrompt(seed: number, length: number, vocab = 512): number[] {
  const rng = new SeededRng(seed);
  return Array.from({ length }, () => 2 + (rng.nextUint32() % (vocab - 2)));
}
