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
import {
  fillPast,
  planAttention,
  releaseAttention,
  toBatchOrder,
  writeNew,
  type AttentionGroup,
  type AttentionPlan,
  type StepSequence,
} from "./attention-plan.ts";
import { BufferPool } from "./buffer-pool.ts";
import type { ForwardBatch, ForwardCapture, ForwardOptions, ForwardResult } from "./forward-batch.ts";
import { finalGraph, layerGraph, modelDims, type ModelDims } from "./model-graphs.ts";
import { loadModelWeights, type Feeds, type ModelWeights } from "./model-weights.ts";
import {
  loadRoutedExperts,
  type ExpertSelection,
  type RoutedExpertsBackend,
} from "./routed-experts-backend.ts";
import { ropeParams, RopeTables, type RopeParams } from "./rope.ts";
import { routeTokens, type RoutingParams, type RoutingResult } from "./routing.ts";

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
  layerDense: ort.InferenceSession;
  layerMoe: ort.InferenceSession;
  final: ort.InferenceSession;
}

function residualFeeds(
  base: Float32Array,
  routed: Float32Array,
  shared: Float32Array,
  rows: number,
  H: number,
): Feeds {
  return {
    h_base: new Tensor("float32", base, [rows, H]),
    h_routed: new Tensor("float32", routed, [rows, H]),
    h_shared: new Tensor("float32", shared, [rows, H]),
  };
}

/** One output of every group's run, concatenated in group order (no copy for a single group). */
function concatRows(outs: readonly Record<string, ort.Tensor>[], name: string, length: number): Float32Array {
  if (outs.length === 1) return outs[0]?.[name]?.data as Float32Array;
  const all = new Float32Array(length);
  let at = 0;
  for (const o of outs) {
    const part = o[name]?.data as Float32Array;
    all.set(part, at);
    at += part.length;
  }
  return all;
}

function concatFeeds(parts: readonly (ort.Tensor | undefined)[]): Float32Array {
  const arrays = parts.map((t) => t?.data as Float32Array);
  const all = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    all.set(a, at);
    at += a.length;
  }
  return all;
}

/** Routing rows in group order → batch order. */
function reorderRouting(plan: AttentionPlan, r: RoutingResult): RoutingResult {
  if (plan.identity) return r;
  const T = plan.order.length;
  const k = r.experts.length / T;
  const kg = r.groups.length / T;
  const out: RoutingResult = {
    experts: new Int32Array(r.experts.length),
    weights: new Float32Array(r.weights.length),
    groups: new Int32Array(r.groups.length),
    expertMargin: new Float32Array(T),
    groupMargin: new Float32Array(T),
  };
  plan.order.forEach((row, i) => {
    out.experts.set(r.experts.subarray(i * k, (i + 1) * k), row * k);
    out.weights.set(r.weights.subarray(i * k, (i + 1) * k), row * k);
    out.groups.set(r.groups.subarray(i * kg, (i + 1) * kg), row * kg);
    out.expertMargin[row] = r.expertMargin[i] as number;
    out.groupMargin[row] = r.groupMargin[i] as number;
  });
  return out;
}

/** A loaded model (create with loadModel). */
export class DeepSeekModel {
  readonly dims: ModelDims;
  readonly rope: RopeParams;
  private readonly ropeTables: RopeTables;
  private readonly routing: RoutingParams;
  private readonly pool = new BufferPool();

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

  async forward(
    batch: ForwardBatch,
    kv: LatentKvStore,
    options: ForwardOptions = {},
  ): Promise<ForwardResult> {
    const d = this.dims;
    const c = this.config;
    if (kv.rowSize !== d.D)
      throw new ExpertMeshError(
        Code.INTERNAL,
        `kv store rows hold ${kv.rowSize} values, the model needs ${d.D}`,
      );
    const seqs = this.stepSequences(batch);
    const T = seqs.reduce((n, s) => n + s.count, 0);
    if (T === 0)
      return { logits: new Float32Array(0), logitOffsets: new Int32Array(batch.sequences.length + 1) };

    const plan = planAttention(seqs, d.nh, d.D, this.pool);
    const { groups, order } = plan;
    try {
      // embeddings and rotary factors, in group order
      const tokens = new Int32Array(T);
      const positions = new Int32Array(T);
      batch.sequences.forEach((s, i) => {
        const row = (seqs[i] as StepSequence).row;
        s.tokens.forEach((tok, j) => {
          tokens[row + j] = tok;
          positions[row + j] = s.start + j;
        });
      });
      const embedded = new Float32Array(T * d.H);
      const cos = new Float32Array(T * d.dr);
      const sin = new Float32Array(T * d.dr);
      const posInOrder = Int32Array.from(order, (r) => positions[r] as number);
      order.forEach((r, i) => {
        const tok = tokens[r] as number;
        embedded.set(this.weights.embed.subarray(tok * d.H, (tok + 1) * d.H), i * d.H);
      });
      this.ropeTables.gatherInterleaved(posInOrder, cos, sin);
      const zeros = new Float32Array(T * d.H);

      // per group: its rows' views; the residual stream is h_base + (h_routed + h_shared),
      // summed inside the next graph
      const view = (a: Float32Array, g: AttentionGroup, width: number): Float32Array =>
        a.subarray(g.rowStart * width, (g.rowStart + g.B * g.Tq) * width);
      const rowsOf = (g: AttentionGroup): number => g.B * g.Tq;
      const state = groups.map((g) => ({
        rope: {
          cos: new Tensor("float32", view(cos, g, d.dr), [rowsOf(g), 1, d.dr]),
          sin: new Tensor("float32", view(sin, g, d.dr), [rowsOf(g), 1, d.dr]),
        },
        mask: new Tensor("float32", g.mask, [g.B, g.Tq * d.nh, g.Sp + g.Tq]),
        kPast: new Tensor("float32", g.kPast, [g.B, g.Sp, d.D]),
        residual: residualFeeds(
          view(embedded, g, d.H),
          view(zeros, g, d.H),
          view(zeros, g, d.H),
          rowsOf(g),
          d.H,
        ),
      }));
      const capture: ForwardCapture | undefined =
        options.capture === undefined ? undefined : { hidden: [], moe: [] };
      const hidden = options.capture === "all" ? capture?.hidden : undefined;
      hidden?.push(toBatchOrder(plan, embedded, d.H));

      for (let l = 0; l < c.numLayers; l++) {
        const lw = this.weights.layers[l];
        if (lw === undefined) throw new ExpertMeshError(Code.INTERNAL, `no weights for layer ${l}`);
        const session = lw.kind === "dense" ? this.sessions.layerDense : this.sessions.layerMoe;
        const outs: Record<string, ort.Tensor>[] = [];
        for (let gi = 0; gi < groups.length; gi++) {
          const g = groups[gi] as AttentionGroup;
          const st = state[gi] as (typeof state)[number];
          fillPast(g, seqs, kv, l, d.D);
          const r = await session.run({
            ...lw.feeds,
            ...st.residual,
            ...st.rope,
            k_past: st.kPast,
            mask: st.mask,
          });
          writeNew(g, seqs, kv, l, r.kv?.data as Float32Array, d.D);
          outs.push(r);
        }
        if (l > 0) hidden?.push(toBatchOrder(plan, concatRows(outs, "x", T * d.H), d.H));

        if (lw.kind === "dense") {
          groups.forEach((g, gi) => {
            const st = state[gi] as (typeof state)[number];
            st.residual = residualFeeds(
              outs[gi]?.h_out?.data as Float32Array,
              view(zeros, g, d.H),
              view(zeros, g, d.H),
              rowsOf(g),
              d.H,
            );
          });
          continue;
        }
        // routing and routed experts over all rows of the step at once
        const hn = concatRows(outs, "hn", T * d.H);
        const route = routeTokens(concatRows(outs, "scores", T * d.E), lw.routerBias, this.routing);
        const routed = await this.routedExperts.run(l, hn, route.experts, route.weights);
        if (routed.length !== T * d.H)
          throw new ExpertMeshError(
            Code.INTERNAL,
            `routed experts of layer ${l} returned ${routed.length} values, expected ${T * d.H}`,
          );
        groups.forEach((g, gi) => {
          const st = state[gi] as (typeof state)[number];
          const o = outs[gi] as Record<string, ort.Tensor>;
          st.residual = residualFeeds(
            o.h?.data as Float32Array,
            view(routed, g, d.H),
            o.shared?.data as Float32Array,
            rowsOf(g),
            d.H,
          );
        });
        capture?.moe.push({
          layer: l,
          gateInput: toBatchOrder(plan, hn, d.H),
          routing: reorderRouting(plan, route),
        });
      }

      // final norm + lm_head on the wanted rows (listed in batch order, indexed in group order)
      const groupRowOf = new Int32Array(T);
      order.forEach((r, i) => (groupRowOf[r] = i));
      const logitOffsets = new Int32Array(batch.sequences.length + 1);
      const wanted: bigint[] = [];
      batch.sequences.forEach((s, i) => {
        const row = (seqs[i] as StepSequence).row;
        const n = s.tokens.length;
        if (s.logits === "all")
          for (let j = 0; j < n; j++) wanted.push(BigInt(groupRowOf[row + j] as number));
        else if (s.logits === "last" && n > 0) wanted.push(BigInt(groupRowOf[row + n - 1] as number));
        logitOffsets[i + 1] = wanted.length;
      });
      const residual =
        state.length === 1
          ? (state[0] as (typeof state)[number]).residual
          : residualFeeds(
              concatFeeds(state.map((st) => st.residual.h_base)),
              concatFeeds(state.map((st) => st.residual.h_routed)),
              concatFeeds(state.map((st) => st.residual.h_shared)),
              T,
              d.H,
            );
      const rows = new Tensor("int64", BigInt64Array.from(wanted), [wanted.length]);
      const f = await this.sessions.final.run({ ...this.weights.final, ...residual, rows });
      hidden?.push(toBatchOrder(plan, f.x?.data as Float32Array, d.H));
      const logits = f.logits?.data as Float32Array;
      return capture === undefined ? { logits, logitOffsets } : { logits, logitOffsets, capture };
    } finally {
      releaseAttention(plan, this.pool);
    }
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
      if (seen.has(s.seq))
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, `batch lists sequence ${s.seq} twice`);
      seen.add(s.seq);
      if (!Number.isInteger(s.start) || s.start < 0)
        throw new ExpertMeshError(Code.INVALID_ARGUMENT, `sequence ${s.seq}: bad start position ${s.start}`);
      if (s.tokens.length === 0 && s.logits !== "none") {
        throw new ExpertMeshError(
          Code.INVALID_ARGUMENT,
          `sequence ${s.seq}: no new tokens but logits wanted`,
        );
      }
      if (s.start + s.tokens.length > c.maxPositionEmbeddings) {
        throw new ExpertMeshError(
          Code.OUT_OF_RANGE,
          `sequence ${s.seq}: positions up to ${s.start + s.tokens.length} exceed max_position_embeddings ${c.maxPositionEmbeddings}`,
        );
      }
      for (const t of s.tokens) {
        if (t < 0 || t >= c.vocabSize)
          throw new ExpertMeshError(
            Code.INVALID_ARGUMENT,
            `sequence ${s.seq}: token id ${t} outside the vocabulary [0, ${c.vocabSize})`,
          );
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
export async function loadModel(
  source: Checkpoint | string,
  options: LoadModelOptions = {},
): Promise<DeepSeekModel> {
  const selection = options.experts ?? (options.routedExperts === undefined ? "all" : "none");
  if (options.routedExperts !== undefined && selection !== "none") {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      "loadModel: give either local experts or a routedExperts backend, not both",
    );
  }
  if (options.routedExperts === undefined && selection === "none") {
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      "loadModel: experts 'none' needs a routedExperts backend",
    );
  }
  const threads = options.threads ?? DEFAULT_SESSION_OPTIONS.threads;
  if (!Number.isInteger(threads) || threads < 0)
    throw new ExpertMeshError(
      Code.INVALID_ARGUMENT,
      `loadModel: threads must be a non-negative integer, got ${threads}`,
    );
  const so: SessionOptions = {
    executionProvider: options.executionProvider ?? DEFAULT_SESSION_OPTIONS.executionProvider,
    threads,
  };

  const ckpt = typeof source === "string" ? await openCheckpoint(source) : source;
  const created: { release(): Promise<void> }[] = [];
  try {
    const c = ckpt.config;
    const d = modelDims(c);
    const rope = ropeParams(c);
    const create = async (graph: Uint8Array, label: string): Promise<ort.InferenceSession> => {
      const s = await createSession(graph, so, label);
      created.push(s);
      return s;
    };
    const sessions: Sessions = {
      layerDense: await create(layerGraph(d, "dense", rope.softmaxScale), "dense layer"),
      layerMoe: await create(layerGraph(d, "moe", rope.softmaxScale), "MoE layer"),
      final: await create(finalGraph(d), "final norm + lm_head"),
    };
    const weights = await loadModelWeights(ckpt, d);
    const local = selection === "none" ? null : await loadRoutedExperts(ckpt, selection, so);
    if (local !== null) created.push(local);
    const backend = options.routedExperts ?? local;
    if (backend === null) throw new ExpertMeshError(Code.INTERNAL, "loadModel: no routed experts backend");
    return new DeepSeekModel(c, weights, sessions, backend, local);
  } catch (err) {
    await Promise.all(created.map((s) => s.release()));
    throw err;
  } finally {
    if (typeof source === "string") await ckpt.close();
  }
}
