/**
 * Routed experts over the network: the RoutedExpertsBackend an attention node plugs into the
 * model. Per `run` (one micro-batch, one MoE layer): plan the dispatch on the placement (each
 * token's row once per worker it needs, with that worker's slots only), send one DispatchRequest
 * per needed worker at once on its long-lived stream, and add the returned weighted sums into
 * [T, H] in float32 (combine), in worker order so results do not depend on arrival order.
 *
 * A worker whose stream broke is left out of planning for `reconnectBackoffMs` (its experts'
 * replicas elsewhere take its rows; with none, `run` fails fast with UNAVAILABLE), then tried again.
 */
import type { RoutedExpertsBackend } from "@expertmesh/model";
import { planDispatch } from "@expertmesh/placement";
import type { Placement } from "@expertmesh/placement";
import { WireDtype } from "@expertmesh/proto";
import { Code, ExpertMeshError, invalidArgument } from "@expertmesh/shared";
import type { GrpcChannelOptions } from "@expertmesh/shared";
import { encodeDispatchRequest } from "../codecs/dispatch-messages.ts";
import { FP8_BLOCK } from "../codecs/fp8-e4m3.ts";
import {
  addEncodedRows,
  encodeRows,
  gatherEncodedRows,
  isCombineDtype,
  isRowDtype,
} from "../codecs/wire-rows.ts";
import type { CombineDtype, RowDtype } from "../codecs/wire-rows.ts";
import { WorkerStream } from "./worker-stream.ts";

export interface RemoteRoutedExpertsOptions {
  /** Where every physical expert lives; its version is sent with every request. */
  readonly placement: Placement;
  /** workerId → "host:port" of its gRPC server; every placement worker needs one. */
  readonly addresses: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** The model's hidden size H. */
  readonly hiddenSize: number;
  /** Encoding of dispatched rows; BF16 by default (FLOAT32 for exactness, FP8_E4M3 needs H % 128 = 0). */
  readonly rowDtype?: RowDtype;
  /** Encoding of the returned sums; BF16 by default. */
  readonly combineDtype?: CombineDtype;
  /** Deadline of one `run`; 30 s by default. */
  readonly timeoutMs?: number;
  /** How long a worker whose stream broke is kept out of planning; 1 s by default. */
  readonly reconnectBackoffMs?: number;
  /** Distinct nodes each token reached, per `run` (for a histogram). `nodesPerRow` is [T]. */
  readonly onNodesPerRow?: (layer: number, nodesPerRow: Int32Array) => void;
  /** A token reached more than topk_group nodes (the placement invariant is broken for this routing). */
  readonly onNodeLimitExceeded?: (layer: number, maxNodesPerRow: number, topkGroup: number) => void;
  /** Refuse (INTERNAL, nothing sent) a `run` whose tokens would reach more than topk_group nodes. */
  readonly strictNodeLimit?: boolean;
  /** Transport settings of the worker channels. */
  readonly channel?: GrpcChannelOptions;
}

/** Counters of what this client did (for metrics and tests). */
export interface RemoteRoutedExpertsStats {
  /** `run` calls that sent at least one request. */
  runs: number;
  /** DispatchRequests sent. */
  requests: number;
  /** Rows sent, summed over workers (a token needing 3 workers counts 3). */
  rowsSent: number;
  /** Runs in which some token reached more than topk_group nodes. */
  nodeLimitExceeded: number;
  /** Most nodes any token reached so far. */
  maxNodesPerRow: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_BACKOFF_MS = 1_000;

export class RemoteRoutedExperts implements RoutedExpertsBackend {
  readonly hiddenSize: number;
  readonly rowDtype: RowDtype;
  readonly combineDtype: CombineDtype;
  readonly timeoutMs: number;
  readonly stats: RemoteRoutedExpertsStats = {
    runs: 0,
    requests: 0,
    rowsSent: 0,
    nodeLimitExceeded: 0,
    maxNodesPerRow: 0,
  };
  readonly #options: RemoteRoutedExpertsOptions;
  readonly #backoffMs: number;
  /** workerId → its stream (kept across placement versions while the worker stays). */
  readonly #streams = new Map<string, WorkerStream>();
  /** workerId → epoch ms until which it is left out of planning. */
  readonly #downUntil = new Map<string, number>();
  #placement: Placement;
  #addresses: ReadonlyMap<string, string>;
  #nextMicroBatch = 0;
  #closed = false;

  constructor(options: RemoteRoutedExpertsOptions) {
    const H = options.hiddenSize;
    if (!Number.isInteger(H) || H <= 0)
      throw invalidArgument("hiddenSize", `must be a positive integer, got ${H}`);
    this.hiddenSize = H;
    this.rowDtype = options.rowDtype ?? WireDtype.BF16;
    this.combineDtype = options.combineDtype ?? WireDtype.BF16;
    if (!isRowDtype(this.rowDtype))
      throw invalidArgument("rowDtype", `must be FLOAT32, BF16 or FP8_E4M3, got ${String(this.rowDtype)}`);
    if (!isCombineDtype(this.combineDtype))
      throw invalidArgument("combineDtype", `must be FLOAT32 or BF16, got ${String(this.combineDtype)}`);
    if (this.rowDtype === WireDtype.FP8_E4M3 && H % FP8_BLOCK !== 0) {
      throw invalidArgument(
        "rowDtype",
        `FP8_E4M3 rows need a hidden size that is a multiple of ${FP8_BLOCK}; this model's is ${H}`,
      );
    }
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#backoffMs = options.reconnectBackoffMs ?? DEFAULT_BACKOFF_MS;
    for (const [field, v] of [
      ["timeoutMs", this.timeoutMs],
      ["reconnectBackoffMs", this.#backoffMs],
    ] as const) {
      if (!Number.isFinite(v) || v < 0)
        throw invalidArgument(field, `must be a non-negative number of ms, got ${v}`);
    }
    this.#options = options;
    this.#placement = options.placement;
    this.#addresses = new Map();
    this.setPlacement(options.placement, options.addresses);
  }

  get placement(): Placement {
    return this.#placement;
  }

  /**
   * Switches to a new placement version (call it between steps, with no `run` in flight). Streams
   * to workers that stay are kept; workers that left are half-closed; new ones get a stream.
   */
  setPlacement(placement: Placement, addresses?: RemoteRoutedExpertsOptions["addresses"]): void {
    if (this.#closed) throw new ExpertMeshError(Code.FAILED_PRECONDITION, "RemoteRoutedExperts is closed");
    const next = addresses === undefined ? this.#addresses : toMap(addresses);
    for (const { workerId } of placement.workers) {
      if (next.get(workerId) === undefined) {
        throw invalidArgument(
          "addresses",
          `no address for worker ${workerId} of placement v${placement.version}`,
        );
      }
    }
    const wanted = new Set(placement.workers.map((w) => w.workerId));
    for (const [workerId, stream] of this.#streams) {
      if (!wanted.has(workerId) || next.get(workerId) !== stream.address) {
        this.#streams.delete(workerId);
        this.#downUntil.delete(workerId);
        void stream.close();
      }
    }
    for (const workerId of wanted) {
      if (this.#streams.has(workerId)) continue;
      const stream = new WorkerStream({
        workerId,
        address: next.get(workerId) as string,
        ...(this.#options.channel === undefined ? {} : { channel: this.#options.channel }),
        onBroken: () => this.#downUntil.set(workerId, Date.now() + this.#backoffMs),
      });
      this.#streams.set(workerId, stream);
    }
    this.#placement = placement;
    this.#addresses = next;
  }

  /** Resolves once every worker's channel is connected; UNAVAILABLE naming the first that is not. */
  async waitForReady(timeoutMs: number): Promise<void> {
    await Promise.all([...this.#streams.values()].map((s) => s.waitForReady(timeoutMs)));
  }

  /**
   * rows [T, H], experts [T, k] logical ids, weights [T, k] → [T, H] Σ_j weights[t, j] · expert(rows[t]),
   * computed by the workers holding the experts. Rejects with the first failure: a worker's
   * in-band error (its code), UNAVAILABLE (stream broke, or no live replica), DEADLINE_EXCEEDED.
   */
  async run(
    layer: number,
    rows: Float32Array,
    experts: Int32Array,
    weights: Float32Array,
  ): Promise<Float32Array> {
    if (this.#closed) throw new ExpertMeshError(Code.FAILED_PRECONDITION, "RemoteRoutedExperts is closed");
    const H = this.hiddenSize;
    if (rows.length % H !== 0)
      throw invalidArgument("rows", `length ${rows.length} is not a multiple of hidden ${H}`);
    const T = rows.length / H;
    const out = new Float32Array(T * H);
    if (T === 0) return out;
    if (experts.length === 0 || experts.length % T !== 0) {
      throw invalidArgument("experts", `length ${experts.length} is not a positive multiple of ${T} rows`);
    }
    const k = experts.length / T;
    const placement = this.#placement;
    const moeLayer = placement.moeLayerOf(layer);
    const plan = planDispatch(placement, {
      moeLayer,
      topk: k,
      topkIds: experts,
      topkWeights: weights,
      ...this.#unavailable(placement),
    });

    this.#checkNodes(layer, plan.nodesPerRow, plan.maxNodesPerRow);
    const encoded = encodeRows(rows, H, this.rowDtype);
    const microBatchId = this.#nextMicroBatch;
    this.#nextMicroBatch = (this.#nextMicroBatch + 1) >>> 0;
    const deadline = Date.now() + this.timeoutMs;

    const parts: { rowIndex: Int32Array; sums: Promise<Uint8Array> }[] = [];
    for (const d of plan.workers) {
      if (d.rows.length === 0) continue;
      const stream = this.#streams.get(d.workerId) as WorkerStream;
      const message = encodeDispatchRequest({
        microBatchId,
        layer,
        placementVersion: placement.version,
        rows: gatherEncodedRows(encoded, d.rows),
        topK: k,
        logical: d.logical,
        physical: d.physical,
        weights: d.weights,
        combineDtype: this.combineDtype,
      });
      const expected = {
        microBatchId,
        layer,
        numRows: d.rows.length,
        hiddenSize: H,
        combineDtype: this.combineDtype,
      };
      parts.push({ rowIndex: d.rows, sums: stream.request(message, expected, deadline) });
      this.stats.requests++;
      this.stats.rowsSent += d.rows.length;
    }
    this.stats.runs++;

    const sums = await Promise.all(parts.map((p) => p.sums));
    for (const [i, part] of parts.entries()) {
      addEncodedRows(out, part.rowIndex, sums[i] as Uint8Array, this.combineDtype, H);
    }
    return out;
  }

  /**
   * Half-closes every stream, lets in-flight requests settle (for up to `graceMs`, then they fail
   * CANCELLED), closes the channels.
   */
  async close(graceMs?: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    await Promise.all(streams.map((s) => s.close(graceMs)));
  }

  /** The plan's `unavailableWorkers`, or nothing when every worker is up. */
  #unavailable(placement: Placement): { unavailableWorkers?: Uint8Array } {
    if (this.#downUntil.size === 0) return {};
    const now = Date.now();
    let mask: Uint8Array | undefined;
    for (const [w, { workerId }] of placement.workers.entries()) {
      const until = this.#downUntil.get(workerId);
      if (until === undefined) continue;
      if (until <= now) {
        this.#downUntil.delete(workerId);
        continue;
      }
      mask ??= new Uint8Array(placement.workers.length);
      mask[w] = 1;
    }
    return mask === undefined ? {} : { unavailableWorkers: mask };
  }

  #checkNodes(layer: number, nodesPerRow: Int32Array, maxNodes: number): void {
    this.#options.onNodesPerRow?.(layer, nodesPerRow);
    if (maxNodes > this.stats.maxNodesPerRow) this.stats.maxNodesPerRow = maxNodes;
    const limit = this.#placement.shape.topkGroup;
    if (maxNodes <= limit) return;
    this.stats.nodeLimitExceeded++;
    this.#options.onNodeLimitExceeded?.(layer, maxNodes, limit);
    if (this.#options.strictNodeLimit === true) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `layer ${layer}: a token reaches ${maxNodes} nodes, more than topk_group ${limit} (placement v${this.#placement.version})`,
        { details: { layer: String(layer), nodes: String(maxNodes), topkGroup: String(limit) } },
      );
    }
  }
}

function toMap(addresses: RemoteRoutedExpertsOptions["addresses"]): ReadonlyMap<string, string> {
  return addresses instanceof Map ? new Map(addresses) : new Map(Object.entries(addresses));
}
