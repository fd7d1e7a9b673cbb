import type { LatentKvStore } from "@expertmesh/model";
import { EngineCore } from "../engine-core.ts";
import type { EngineModel } from "../model-runner.ts";

/** A model whose forward can also run on a fresh contiguous KV store (DeepSeekModel). */
export interface DeviationModel extends EngineModel {
  createKvStore(): LatentKvStore & { reserve(seq: number, length: number): void };
}

/** One way of running the model (e.g. a wire dtype): `use` switches to it and returns the model. */
export interface DeviationVariant {
  name: string;
  use: () => DeviationModel;
}

export interface WireDeviation {
  name: string;
  /** max |logit − reference logit| over every position of every prompt + reference continuation. */
  maxAbsLogitDiff: number;
  /** Greedy continuations identical to the reference's, of `sequences`. */
  greedyMatches: number;
  sequences: number;
  /** Of the sequences that diverged: the earliest generated position where one did (null if none). */
  firstDivergence: number | null;
}

/**
 * How far each variant's outputs are from the reference's on the same prompts: the reference
 * generates `decodeSteps` greedy tokens per prompt; every variant is then scored on the same
 * token sequences (teacher forcing: all logits, max |difference|) and on its own greedy tokens.
 */
export async function measureWireDeviation(
  reference: DeviationVariant,
  variants: readonly DeviationVariant[],
  prompts: readonly (readonly number[])[],
  decodeSteps: number,
): Promise<WireDeviation[]> {
  const refModel = reference.use();
  const refTokens = await greedy(refModel, prompts, decodeSteps);
  const full = prompts.map((p, i) => [...p, ...refTokens[i]!.slice(0, -1)]);
  const refLogits = await allLogits(refModel, full);
  const out: WireDeviation[] = [];
  for (const v of variants) {
    const model = v.use();
    const logits = await allLogits(model, full);
    let maxAbs = 0;
    for (let i = 0; i < logits.length; i++) {
      const d = Math.abs(logits[i]! - refLogits[i]!);
      if (d > maxAbs || Number.isNaN(d)) maxAbs = d;
    }
    const tokens = await greedy(model, prompts, decodeSteps);
    let matches = 0;
    let first: number | null = null;
    tokens.forEach((t, i) => {
      const r = refTokens[i]!;
      const at = t.findIndex((x, j) => x !== r[j]);
      if (at < 0) matches++;
      else first = first === null ? at : Math.min(first, at);
    });
    out.push({
      name: v.name,
      maxAbsLogitDiff: maxAbs,
      greedyMatches: matches,
      sequences: prompts.length,
      firstDivergence: first,
    });
  }
  return out;
}

/** Greedy continuations (EOS ignored) of all prompts, batched in one engine. */
async function greedy(
  model: EngineModel,
  prompts: readonly (readonly number[])[],
  steps: number,
): Promise<number[][]> {
  const core = new EngineCore(model, { kvCacheBytes: 64 * 2 ** 20, maxNumSeqs: prompts.length });
  const tokens = prompts.map((): number[] => []);
  prompts.forEach((p, i) =>
    core.addRequest({
      requestId: String(i),
      promptTokenIds: p,
      sampling: { temperature: 0, maxTokens: steps, ignoreEos: true },
    }),
  );
  while (core.hasUnfinishedRequests()) {
    const { outputs } = await core.step();
    for (const o of outputs) tokens[Number(o.requestId)]!.push(...o.newTokenIds);
  }
  return tokens;
}

/** Logits of every position of every sequence, one forward: [Σ lengths, vocab]. */
async function allLogits(
  model: DeviationModel,
  sequences: readonly (readonly number[])[],
): Promise<Float32Array> {
  const kv = model.createKvStore();
  sequences.forEach((s, i) => kv.reserve(i, s.length));
  const r = await model.forward(
    {
      sequences: sequences.map((s, i) => ({
        seq: i,
        tokens: Int32Array.from(s),
        start: 0,
        logits: "all" as const,
      })),
    },
    kv,
  );
  return r.logits;
}
