import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import {
  FP8_E4M3_MAX,
  FP8_E4M3_VALUES,
  dequantizeFp8Rows,
  encodeFp8E4M3,
  quantizeFp8Rows,
} from "../src/index.ts";
import { seededRandom } from "./helpers.ts";

/** Finite non-negative E4M3FN values in increasing order with their bytes (0x00..0x7E). */
const POSITIVE = Array.from({ length: 0x7f }, (_, b) => ({ byte: b, value: FP8_E4M3_VALUES[b] as number }));

describe("E4M3FN value table", () => {
  it("decodes the format's landmarks", () => {
    assert.equal(FP8_E4M3_VALUES[0x00], 0);
    assert.ok(Object.is(FP8_E4M3_VALUES[0x80], -0));
    assert.equal(FP8_E4M3_VALUES[0x01], 2 ** -9); // smallest subnormal
    assert.equal(FP8_E4M3_VALUES[0x07], 7 * 2 ** -9); // largest subnormal
    assert.equal(FP8_E4M3_VALUES[0x08], 2 ** -6); // smallest normal
    assert.equal(FP8_E4M3_VALUES[0x38], 1);
    assert.equal(FP8_E4M3_VALUES[0x39], 1.125);
    assert.equal(FP8_E4M3_VALUES[0x7e], FP8_E4M3_MAX);
    assert.equal(FP8_E4M3_VALUES[0xfe], -FP8_E4M3_MAX);
    assert.ok(Number.isNaN(FP8_E4M3_VALUES[0x7f]));
    assert.ok(Number.isNaN(FP8_E4M3_VALUES[0xff]));
    for (let i = 1; i < POSITIVE.length; i++)
      assert.ok(POSITIVE[i]!.value > POSITIVE[i - 1]!.value, `byte ${i} increases`);
  });
});

describe("encodeFp8E4M3", () => {
  it("maps every representable value back to its byte", () => {
    for (let b = 0; b < 256; b++) {
      if ((b & 0x7f) === 0x7f) continue;
      assert.equal(encodeFp8E4M3(FP8_E4M3_VALUES[b] as number), b, `byte 0x${b.toString(16)}`);
    }
  });

  it("rounds to nearest, ties to the even byte, on both sides of every midpoint", () => {
    for (let i = 1; i < POSITIVE.length; i++) {
      const lo = POSITIVE[i - 1]!;
      const hi = POSITIVE[i]!;
      const mid = (lo.value + hi.value) / 2; // exact in float32 (few significant bits)
      const even = lo.byte % 2 === 0 ? lo.byte : hi.byte;
      assert.equal(
        encodeFp8E4M3(mid),
        even,
        `tie between 0x${lo.byte.toString(16)} and 0x${hi.byte.toString(16)}`,
      );
      assert.equal(encodeFp8E4M3(-mid), even | 0x80, "negative tie");
      const step = (hi.value - lo.value) / 64;
      assert.equal(encodeFp8E4M3(mid - step), lo.byte, "just below the midpoint");
      assert.equal(encodeFp8E4M3(mid + step), hi.byte, "just above the midpoint");
    }
  });

  it("saturates beyond ±448 (no infinities in e4m3fn) and keeps NaN", () => {
    assert.equal(encodeFp8E4M3(463.9), 0x7e);
    assert.equal(encodeFp8E4M3(464), 0x7e); // tie with the absent 480: even (448) wins
    assert.equal(encodeFp8E4M3(465), 0x7e);
    assert.equal(encodeFp8E4M3(1e30), 0x7e);
    assert.equal(encodeFp8E4M3(-1e30), 0xfe);
    assert.equal(encodeFp8E4M3(Infinity), 0x7e);
    assert.equal(encodeFp8E4M3(-Infinity), 0xfe);
    assert.equal(encodeFp8E4M3(Number.NaN) & 0x7f, 0x7f);
  });

  it("flushes values below half the smallest subnormal to (signed) zero", () => {
    assert.equal(encodeFp8E4M3(2 ** -11), 0x00);
    assert.equal(encodeFp8E4M3(2 ** -10), 0x00); // tie between 0 and 2^-9: even is 0
    assert.equal(encodeFp8E4M3(1.01 * 2 ** -10), 0x01);
    assert.equal(encodeFp8E4M3(-1e-20), 0x80);
  });
});

describe("quantizeFp8Rows / dequantizeFp8Rows", () => {
  it("round-trips rows within 2^-4 relative (normal range) or 2^-10 of the block scale (subnormal)", () => {
    const random = seededRandom(7);
    const H = 384;
    const R = 24;
    const rows = new Float32Array(R * H);
    // Blocks with very different magnitudes, so each block needs its own scale.
    for (let i = 0; i < rows.length; i++) {
      const block = Math.floor(i / 128);
      const magnitude = 10 ** ((block % 7) - 3);
      rows[i] = (random() * 2 - 1) * magnitude * (random() < 0.05 ? 50 : 1);
    }
    const { values, scales } = quantizeFp8Rows(rows, H);
    assert.equal(values.length, R * H);
    assert.equal(scales.length, (R * H) / 128);
    const back = dequantizeFp8Rows(values, scales, H);
    let worstRelative = 0;
    for (let i = 0; i < rows.length; i++) {
      const x = rows[i] as number;
      const s = scales[Math.floor(i / 128)] as number;
      const bound = Math.max(Math.abs(x) * 2 ** -4, s * 2 ** -10) * (1 + 1e-6);
      const err = Math.abs((back[i] as number) - x);
      assert.ok(err <= bound, `value ${i}: ${x} came back as ${back[i]} (error ${err} > ${bound})`);
      if (Math.abs(x) > s * 2 ** -6) worstRelative = Math.max(worstRelative, err / Math.abs(x));
    }
    // The bound is tight enough to mean something: 3 mantissa bits really are in use.
    assert.ok(worstRelative > 2 ** -6, `worst relative error ${worstRelative}`);
  });

  it("sets each block's scale to amax / 448 and maps the amax element to ±448", () => {
    const H = 256;
    const rows = new Float32Array(H);
    rows[5] = -3.5; // block 0 amax
    rows[7] = 1;
    rows[200] = 0.001; // block 1 amax
    const { values, scales } = quantizeFp8Rows(rows, H);
    assert.equal(scales[0], Math.fround(3.5 / 448));
    assert.equal(scales[1], Math.fround(rows[200] / 448));
    assert.equal(values[5], 0xfe);
    assert.equal(values[200], 0x7e);
    const back = dequantizeFp8Rows(values, scales, H);
    assert.ok(Math.abs((back[5] as number) + 3.5) < 1e-6);
    assert.ok(Math.abs((back[200] as number) - 0.001) < 1e-9);
  });

  it("gives an all-zero block scale 0 and zeros back", () => {
    const { values, scales } = quantizeFp8Rows(new Float32Array(128), 128);
    assert.deepEqual(Array.from(scales), [0]);
    assert.ok(values.every((v) => v === 0));
    assert.ok(dequantizeFp8Rows(values, scales, 128).every((v) => v === 0));
  });

  it("refuses non-finite values and a width that is not a multiple of 128", () => {
    const rows = new Float32Array(256);
    rows[130] = Number.NaN;
    assert.throws(
      () => quantizeFp8Rows(rows, 256),
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && /block 1/.test(e.message),
    );
    rows[130] = Infinity;
    assert.throws(
      () => quantizeFp8Rows(rows, 256),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT,
    );
    assert.throws(
      () => quantizeFp8Rows(new Float32Array(64), 64),
      (e: unknown) =>
        e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT && /multiple of 128/.test(e.message),
    );
    assert.throws(
      () => dequantizeFp8Rows(new Uint8Array(256), new Float32Array(1), 256),
      (e: unknown) => e instanceof ExpertMeshError && e.details.field === "row_scales",
    );
  });
});
