/**
 * Dispatch/combine transport measured against raw loopback TCP: the same bytes per round trip
 * over RemoteRoutedExperts' gRPC streams (rows to the workers, weighted sums back) and over a
 * bare node:net echo; plus the round trip of one MoE layer for one token.
 */
import { WireDtype } from "@expertmesh/proto";
import type { RemoteRoutedExperts } from "../client/remote-routed-experts.ts";
import { FP8_BLOCK } from "../codecs/fp8-e4m3.ts";
import { bytesPerValue } from "../codecs/wire-rows.ts";
import { TcpEcho } from "./tcp-echo.ts";

export interface WireBenchOptions {
  /** A MoE layer of the placement. */
  layer: number;
  nRoutedExperts: number;
  nGroup: number;
  topkGroup: number;
  /** Experts per token of the model (for the one-token MoE round trip). */
  topK: number;
  /** Rows per message to compare (e.g. one decode micro-batch, one prefill micro-batch). */
  rows: readonly number[];
  /** Timed round trips per size: at least this many... */
  minRuns?: number;
  /** ...and until this much time was spent on the size. */
  minMs?: number;
  /** Timed one-token MoE round trips. */
  tokenRuns?: number;
  seed?: number;
}

export interface WireSizeResult {
  rows: number;
  /** Row payload sent (rows × hidden × dtype bytes, + FP8 scales) and sums payload received. */
  dispatchBytes: number;
  combineBytes: number;
  /** Median ms of one RemoteRoutedExperts.run (each row to one expert; includes the worker's compute). */
  dispatchMs: number;
  /** Median ms of one TCP echo round trip of the same byte counts. */
  tcpMs: number;
  dispatchBytesPerS: number;
  tcpBytesPerS: number;
  /** dispatchBytesPerS / tcpBytesPerS. */
  ratio: number;
}

export interface WireBenchResult {
  rowDtype: string;
  combineDtype: string;
  sizes: WireSizeResult[];
  /** One token, topK experts of topkGroup groups: median / p90 ms of the MoE layer's run. */
  oneTokenMoeMs: { median: number; p90: number; runs: number };
}

/** mulberry32: reproducible inputs. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
}

export async function benchDispatchWire(
  experts: RemoteRoutedExperts,
  options: WireBenchOptions,
): Promise<WireBenchResult> {
  const H = experts.hiddenSize;
  const random = rng(options.seed ?? 0);
  const minRuns = options.minRuns ?? 10;
  const minMs = options.minMs ?? 300;
  const rowBytes =
    H * bytesPerValue(experts.rowDtype) + (experts.rowDtype === WireDtype.FP8_E4M3 ? (H / FP8_BLOCK) * 4 : 0);
  const sumBytes = H * bytesPerValue(experts.combineDtype);
  const echo = await TcpEcho.start();
  const sizes: WireSizeResult[] = [];
  try {
    for (const T of options.rows) {
      const rows = Float32Array.from({ length: T * H }, () => random() * 2 - 1);
      // one expert per row: the transport dominates, the worker computes little
      const ids = Int32Array.from({ length: T }, () => Math.floor(random() * options.nRoutedExperts));
      const weights = new Float32Array(T).fill(1);
      const payload = new Uint8Array(T * rowBytes);
      const dispatchBytes = T * rowBytes;
      const combineBytes = T * sumBytes;
      await experts.run(options.layer, rows, ids, weights); // warm-up
      await echo.roundTrip(payload, combineBytes);
      const d: number[] = [];
      const e: number[] = [];
      let spent = 0;
      while (d.length < minRuns || spent < minMs) {
        const t0 = performance.now();
        await experts.run(options.layer, rows, ids, weights);
        const a = performance.now() - t0;
        const b = await echo.roundTrip(payload, combineBytes);
        d.push(a);
        e.push(b);
        spent += a + b;
      }
      const dispatchMs = quantile(d, 0.5);
      const tcpMs = quantile(e, 0.5);
      const bytes = dispatchBytes + combineBytes;
      sizes.push({
        rows: T,
        dispatchBytes,
        combineBytes,
        dispatchMs,
        tcpMs,
        dispatchBytesPerS: bytes / (dispatchMs / 1000),
        tcpBytesPerS: bytes / (tcpMs / 1000),
        ratio: tcpMs / dispatchMs,
      });
    }
  } finally {
    await echo.close();
  }

  // one token: topK experts spread over topkGroup groups, as routing picks them
  const groupSize = options.nRoutedExperts / options.nGroup;
  const perGroup = Math.ceil(options.topK / options.topkGroup);
  const groups = [...Array(options.nGroup).keys()].sort(() => random() - 0.5).slice(0, options.topkGroup);
  const ids = new Int32Array(options.topK);
  for (let j = 0; j < options.topK; j++)
    ids[j] = (groups[Math.floor(j / perGroup) % groups.length] ?? 0) * groupSize + (j % perGroup);
  const row = Float32Array.from({ length: H }, () => random() * 2 - 1);
  const w = new Float32Array(options.topK).fill(1 / options.topK);
  const runs = options.tokenRuns ?? 200;
  await experts.run(options.layer, row, ids, w);
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await experts.run(options.layer, row, ids, w);
    t.push(performance.now() - t0);
  }
  return {
    rowDtype: WireDtype[experts.rowDtype],
    combineDtype: WireDtype[experts.combineDtype],
    sizes,
    oneTokenMoeMs: { median: quantile(t, 0.5), p90: quantile(t, 0.9), runs },
  };
}
