/**
 * The exact (float32) DeepSeek-V3 forward pass on onnxruntime. Per decoder layer and step:
 * attention-in graph → KV rows written to the store → attention-core graph per group →
 * attention-out graph (+ dense MLP, or router logits and shared expert) → routing in JS →
 * routed experts through a RoutedExpertsBackend → residual. Then final norm + lm_head for the
 * rows whose logits are wanted.
 */
import type * as ort from "onnxruntime-node";
import { Tensor } from "onnxruntime-node";
import { ExpertMeshError, Code } from "@expertmesh/shared";
import { openCheckpoint, type Checkpoint } from "../checkpoint/checkpoint.ts";
import type { ModelConfig } from "../config/model-config.ts";
import type { LatentKvStore } from "../kv/latent-kv-store.ts";
import { ContiguousKvStore } from "../kv/contiguous-kv-store.ts";
import { createSession, DEFAULT_SESSION_OPTIONS, type SessionOptions } from "../onnx/ort-session.ts";
import { fillKeys, groupQueries, planAttention, scatterOutput, type StepSequence } from "./attention-plan.ts";
import type { ForwardBatch, ForwardCapture, ForwardOptions, ForwardResult } from "./forward-batch.ts";
import { attentionCoreGraph, attentionInGraph, attentionOutGraph, finalGraph, modelDims, type ModelDims } from "./model-graphs.ts";
import { loadModelWeights, type ModelWeights } from "./model-weights.ts";
import { loadRoutedExperts, type ExpertSelection, type RoutedExpertsBackend } from "./routed-experts-backend.ts";
import { ropeParams, RopeTables, type RopeParams } from "./rope.ts";
import { routeTokens, type RoutingParams } from "./routing.ts";

export interface LoadModelOptions {
  /** onnxruntime execution provider (default "cpu"). */
  executionProvider?: string;
  /** Intra-op threads per session (default 0: onnxruntime's choice). */
  threads?: number;
  /** Routed experts to load into a local backend (default "all"; must be "none" with `routedExperts`). */
  experts?: ExpertSelection;
  /** Where routed experts run instead of locally (e.g. a remote backend). */
  routedExperts?: RoutedExpertsBackend;
}

interface Sessions {
  attnIn: ort.InferenceSession;
  core: ort.InferenceSession;
  outDense: ort.InferenceSession;
  outMoe: ort.InferenceSession;
  final: ort.InferenceSession;
}

const f32 = Math.fround;

export class DeepSeekModel {
  readonly dims: ModelDims;
  readonly rope: RopeParams;
  private readonly ropeTables: RopeTables;
  private readonly routing: RoutingParams;

  constructor(
    readonly config: ModelConfig,
    private readonly weights: ModelWeights,
    private readonly sessions: Sessions,
    private routedExperts: RoutedExpertsBackend,
    private readonly ownedBackend: { release(): Promise<void> } | null,
  ) {
    this.dims = modelDims(config);
    this.rope = ropeParams(config);
    this.ropeTables = new RopeTables(this.rope);
    this.routing = {
      nExperts: config.nRoutedExperts,
      topK: config.numExpertsPerTok,
      nGroup: config.nGroup,
      topkGroup: config.topkGroup,
      routedScalingFactor: config.routedScalingFactor,
    };
  }

  /** Values per token per layer in the latent KV cache: kvLoraRank + qkRopeHeadDim. */
  get kvRowSize(): number {
    return this.dims.D;
  }

  /** A contiguous KV store sized for this model (single-process use and tests). */
  createKvStore(): ContiguousKvStore {
    return new ContiguousKvStore({ numLayers: this.config.numLayers, rowSize: this.dims.D });
  }

  /** Replaces where routed experts run (e.g. a remote backend). */
  setRoutedExperts(backend: RoutedExpertsBackend): void {
    this.routedExperts = backend;
  }

  async forward(batch: ForwardBatch, kv: LatentKvStore, options: ForwardOptions = {}): Promise<ForwardResult> {
    const d = this.dims;
    const c = this.config;
    if (kv.rowSize !== d.D) throw new ExpertMeshError(Code.INTERNAL, `kv store rows hold ${kv.rowSize} values, the model needs ${d.D}`);
    const seqs = this.stepSequences(batch);
    const T = seqs.reduce((n, s) => n + s.count, 0);
    if (T === 0) return { logits: new Float32Array(0), logitOffsets: new Int32Array(batch.sequences.length + 1) };

    // embeddings and per-row rotary tables
    const half = d.dr / 2;
    let h = new Float32Array(T * d.H);
    const positions = new Int32Array(T);
    batch.sequences.forEach((s, i) => {
      const row = (seqs[i] as StepSequence).row;
      s.tokens.forEach((tok, j) => {
        h.set(this.weights.embed.subarray(tok * d.H, (tok + 1) * d.H), (row + j) * d.H);
        positions[row + j] = s.start + j;
      });
    });
    const cos = new Float32Array(T * half);
    const sin = new Float32Array(T * half);
    this.ropeTables.gather(positions, cos, sin);
    const cosT = new Tensor("float32", cos, [T, 1, half, 1]);
    const sinT = new Tensor("float32", sin, [T, 1, half, 1]);

    const groups = planAttention(seqs, d.nh, d.D);
    const capture: ForwardCapture | undefined = options.capture ? { hidden: [h], moe: [] } : undefined;
    const oAll = groups.length === 1 && groups[0]?.q === null ? null : new Float32Array(T * d.nh * d.D);

    for (let l = 0; l < c.numLayers; l++) {
      const lw = this.weights.layers[l];
      if (lw === undefined) throw new ExpertMeshError(Code.INTERNAL, `no weights for layer ${l}`);
      const x = new Tensor("float32", h, [T, d.H]);
      const a = await this.sessions.attnIn.run({ ...lw.attnIn, x, cos: cosT, sin: sinT });
      const q = a.q?.data as Float32Array; // [T, nh, D]
      const kvRows = a.kv?.data as Float32Array; // [T, D]
      for (const s of seqs) kv.write(s.seq, l, s.start, kvRows.subarray(s.row * d.D, (s.row + s.count) * d.D));

      let o: Float32Array = oAll ?? new Float32Array(0); // [T, nh, D]
      for (const g of groups) {
        fillKeys(g, seqs, kv, l, d.D);
        const gq = groupQueries(g, seqs, q, d.nh, d.D);
        const M = g.Tq * d.nh;
        const r = await this.sessions.core.run({
          q: new Tensor("float32", gq, [g.B, M, d.D]),
          k: new Tensor("float32", g.k, [g.B, g.S, d.D]),
          mask: new Tensor("float32", g.mask, [g.B, M, g.S]),
        });
        const go = r.o?.data as Float32Array;
        if (oAll === null) o = go;
        else scatterOutput(g, seqs, go, oAll, d.nh, d.D);
      }

      const oT = new Tensor("float32", o, [T, d.nh, d.D]);
      if (lw.kind === "dense") {
        const r = await this.sessions.outDense.run({ ...lw.attnOut, o: oT, x });
        h = r.h_out?.data as Float32Array;
      } else {
        const r = await this.sessions.outMoe.run({ ...lw.attnOut, o: oT, x });
        const hMid = r.h?.data as Float32Array;
        const hn = r.hn?.data as Float32Array;
        const shared = r.shared?.data as Float32Array;
        const route = routeTokens(r.router_logits?.data as Float32Array, lw.routerBias, this.routing);
        const routed = await this.routedExperts.run(l, hn, route.experts, route.weights);
        const next = new Float32Array(T * d.H);
        // x + (routed + shared), rounded as the reference adds them
        for (let i = 0; i < next.length; i++) next[i] = (hMid[i] as number) + f32((routed[i] as number) + (shared[i] as number));
        h = next;
        capture?.moe.push({ layer: l, gateInput: hn, routing: route });
      }
      capture?.hidden.push(h);
    }

    // final norm + lm_head on the wanted rows
    const logitOffsets = new Int32Array(batch.sequences.length + 1);
    const wanted: number[] = [];
    batch.sequences.forEach((s, i) => {
      const row = (seqs[i] as StepSequence).row;
      const n = s.tokens.length;
      if (s.logits === "all") for (let j = 0; j < n; j++) wanted.push(row + j);
      else if (s.logits === "last") wanted.push(row + n - 1);
      logitOffsets[i + 1] = wanted.length;
    });
    let logits = new Float32Array(0);
    if (wanted.length > 0) {
      const sel = wanted.length === T ? h : new Float32Array(wanted.length * d.H);
      if (sel !== h) wanted.forEach((row, i) => sel.set(h.subarray(row * d.H, (row + 1) * d.H), i * d.H));
      const r = await this.sessions.final.run({ ...this.weights.final, x: new Tensor("float32", sel, [wanted.length, d.H]) });
      logits = r.logits?.data as Float32Array;
    }
    return capture === undefined ? { logits, logitOffsets } : { logits, logitOffsets, capture };
  }

  /** Releases onnxruntime sessions (and the local experts' sessions this model created). */
  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s: ort.InferenceSession) => s.release()));
    await this.ownedBackend?.release();
  }

  private stepSequences(batch: ForwardBatch): StepSequence[] {
    const c = this.config;
    let row = 0;
    const seen = new Set<number>();
    return batch.sequences.map((s) => {
      if (seen.has(s.seq)) throw new ExpertMeshError(Code.INVALID_ARGUMENT, `batch lists sequence ${s.seq} twice`);
      seen.add(s.seq);
      if (!Number.isInteger(s.start) || s.start < 0) throw new ExpertMeshError(Code.INVALID_ARGUMENT, `sequence ${s.seq}: bad start position ${s.start}`);
      if (s.tokens.length === 0 && s.logits !== "none") {
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, `sequence ${s.seq}: no new tokens but logits wanted`);
      }
      if (s.start + s.tokens.length > c.maxPositionEmbeddings) {
        throw new ExpertMeshError(Code.OUT_OF_RANGE, `sequence ${s.seq}: positions up to ${s.start + s.tokens.length} exceed max_position_embeddings ${c.maxPositionEmbeddings}`);
      }
      for (const t of s.tokens) {
        if (t < 0 || t >= c.vocabSize) throw new ExpertMeshError(Code.INVALID_ARGUMENT, `sequence ${s.seq}: token id ${t} outside the vocabulary [0, ${c.vocabSize})`);
      }
      const out: StepSequence = { seq: s.seq, start: s.start, count: s.tokens.length, row };
      row += s.tokens.length;
      return out;
    });
  }
}

/**
 * Loads a model from a checkpoint directory (opened and closed here) or an open Checkpoint
 * (left open). Compiles each graph kind once; weights are read once as float32.
 */
export async function loadModel(source: Checkpoint | string, options: LoadModelOptions = {}): Promise<DeepSeekModel> {
  const ckpt = typeof source === "string" ? await openCheckpoint(source) : source;
  try {
    const c = ckpt.config;
    const d = modelDims(c);
    const so: SessionOptions = {
      executionProvider: options.executionProvider ?? DEFAULT_SESSION_OPTIONS.executionProvider,
      threads: options.threads ?? DEFAULT_SESSION_OPTIONS.threads,
    };
    const rope = ropeParams(c);
    const sessions: Sessions = {
      attnIn: await createSession(attentionInGraph(d), so, "attention-in"),
      core: await createSession(attentionCoreGraph(d, rope.softmaxScale), so, "attention core"),
      outDense: await createSession(attentionOutGraph(d, "dense"), so, "attention-out (dense)"),
      outMoe: await createSession(attentionOutGraph(d, "moe"), so, "attention-out (MoE)"),
      final: await createSession(finalGraph(d), so, "final norm + lm_head"),
    };
    const weights = await loadModelWeights(ckpt, d);
    const selection = options.experts ?? (options.routedExperts === undefined ? "all" : "none");
    if (options.routedExperts !== undefined && selection !== "none") {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, "loadModel: give either local experts or a routedExperts backend, not both");
    }
    const local = selection === "none" ? null : await loadRoutedExperts(ckpt, selection, so);
    const backend = options.routedExperts ?? local;
    if (backend === null) {
      throw new ExpertMeshError(Code.INVALID_ARGUMENT, "loadModel: experts 'none' needs a routedExperts backend");
    }
    return new DeepSeekModel(c, weights, sessions, backend, local);
  } finally {
    if (typeof source === "string") await ckpt.close();
  }
}
