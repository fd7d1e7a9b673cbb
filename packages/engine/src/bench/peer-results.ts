/**
 * What other systems reach on the bench model on a 2-core machine of this kind (2 threads,
 * prompt 64, 32 greedy decode steps, medians), copied from shared/bench/README.md.
 */
export interface PeerResult {
  system: string;
  /** Matches the float32 reference? */
  exact: boolean;
  note: string;
  /** B → decode tok/s. */
  decodeTokS: Readonly<Record<number, number>>;
  /** B → prefill tok/s. */
  prefillTokS: Readonly<Record<number, number>>;
}

export const PEER_RESULTS: readonly PeerResult[] = [
  {
    system: "DeepSeek reference inference code (PyTorch fp32, OpenBLAS)",
    exact: true,
    note: "the reference",
    decodeTokS: { 1: 105, 8: 193, 32: 385, 64: 460 },
    prefillTokS: { 1: 561, 64: 3284 },
  },
  {
    system: "llama.cpp, F32 weights, F32 KV cache, flash attention off",
    exact: true,
    note: "max logit diff 1.2e-5",
    decodeTokS: { 1: 389, 8: 595, 32: 817, 64: 915 },
    prefillTokS: { 1: 1391, 64: 2196 },
  },
  {
    system: "llama.cpp, F32 weights, defaults (F16 KV, flash attention)",
    exact: false,
    note: "logits off by up to 1.28",
    decodeTokS: { 1: 425, 8: 761, 32: 1093, 64: 1338 },
    prefillTokS: { 1: 1515, 64: 2634 },
  },
  {
    system: "llama.cpp, BF16 weights, defaults",
    exact: false,
    note: "greedy tokens diverge",
    decodeTokS: { 1: 528, 8: 990, 32: 1389, 64: 1644 },
    prefillTokS: { 1: 1992, 64: 3078 },
  },
];

export interface GoalCheck {
  goal: string;
  target: number;
  measured: number | null;
  met: boolean | null;
}

/**
 * The engine's goals from the bench README, checked against measured B → tok/s maps
 * (null where the B a goal needs was not measured).
 */
export function checkGoals(
  decode: ReadonlyMap<number, number>,
  prefill: ReadonlyMap<number, number>,
): GoalCheck[] {
  const exactLlama = PEER_RESULTS[1]!;
  const inexact = PEER_RESULTS.filter((p) => !p.exact);
  const fastest = (b: number, key: "decodeTokS" | "prefillTokS"): number =>
    Math.max(...PEER_RESULTS.map((p) => p[key][b] ?? 0));
  const check = (goal: string, target: number, measured: number | undefined): GoalCheck => ({
    goal,
    target,
    measured: measured ?? null,
    met: measured === undefined ? null : measured >= target,
  });
  return [
    check("decode B=64 ≥ 1.5 × exact llama.cpp", 1.5 * exactLlama.decodeTokS[64]!, decode.get(64)),
    check(
      "decode B=64 ≥ fastest inexact llama.cpp",
      Math.max(...inexact.map((p) => p.decodeTokS[64]!)),
      decode.get(64),
    ),
    check("prefill B=1 ahead of every row", fastest(1, "prefillTokS"), prefill.get(1)),
    check("prefill B=64 ahead of every row", fastest(64, "prefillTokS"), prefill.get(64)),
    check("decode B=1 ≥ exact llama.cpp", exactLlama.decodeTokS[1]!, decode.get(1)),
    check(
      "decode B=1 ≥ fastest llama.cpp",
      Math.max(...PEER_RESULTS.slice(1).map((p) => p.decodeTokS[1]!)),
      decode.get(1),
    ),
  ];
}
