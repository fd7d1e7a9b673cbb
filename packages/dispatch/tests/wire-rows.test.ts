import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WireDtype } from "@expertmesh/proto";
import { Code } from "@expertmesh/shared";
import { addEncodedRows, decodeRows, encodeRows, encodeSums, gatherEncodedRows } from "../src/index.ts";
import { seededRandom, throwsCode } from "./helpers.ts";

/** float32 values from their bit patterns. */
function fromBits(...bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

/** BF16 bits of each value, through the BF16 row encoding. */
function bf16Bits(values: Float32Array): number[] {
  const { data } = encodeRows(values, values.length, WireDtype.BF16);
  return Array.from(new Uint16Array(data.buffer, data.byteOffset, values.length));
}

describe("BF16 rows", () => {
  it("round to nearest, ties to even", () => {
    assert.deepEqual(
      bf16Bits(
        fromBits(
          0x3f800000, // 1.0: exact
          0x3f808000, // halfway between 0x3F80 and 0x3F81: even is 0x3F80
          0x3f818000, // halfway between 0x3F81 and 0x3F82: even is 0x3F82
          0x3f808001, // just above half: up
          0x3f807fff, // just below half: down
          0xbf818000, // negative tie: even magnitude
          0x00018000, // subnormal tie: even (0x0002)
          0x00008000, // subnormal tie: even (0x0000)
        ),
      ),
      [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80, 0xbf82, 0x0002, 0x0000],
    );
  });

  it("overflow to infinity only past the largest bf16, keep infinities, signed zero and NaN", () => {
    const bits = bf16Bits(
      fromBits(
        0x7f7fffff, // float32 max rounds up to +inf
        0x7f7f7fff, // just below the tie: largest finite bf16
        0x7f800000, // +inf
        0xff800000, // -inf
        0x80000000, // -0
        0x7f800001, // a NaN whose payload is only in the low bits: must not become inf
        0xffc00000, // negative quiet NaN
      ),
    );
    assert.deepEqual(bits.slice(0, 5), [0x7f80, 0x7f7f, 0x7f80, 0xff80, 0x8000]);
    for (const nan of bits.slice(5))
      assert.ok((nan & 0x7f80) === 0x7f80 && (nan & 0x7f) !== 0, `0x${nan.toString(16)} is a NaN`);
  });

  it("decode exactly, and a round trip is within half a bf16 ulp (2^-8 relative: 7 stored mantissa bits)", () => {
    const random = seededRandom(3);
    const H = 48;
    const rows = Float32Array.from(
      { length: 5 * H },
      () => (random() * 2 - 1) * 10 ** Math.floor(random() * 6 - 3),
    );
    const enc = encodeRows(rows, H, WireDtype.BF16);
    assert.equal(enc.data.byteLength, rows.length * 2);
    const back = decodeRows(enc.data, enc.scales, WireDtype.BF16, 5, H);
    for (let i = 0; i < rows.length; i++) {
      const x = rows[i] as number;
      assert.ok(Math.abs((back[i] as number) - x) <= Math.abs(x) * 2 ** -8, `value ${i}: ${x} → ${back[i]}`);
      // Exact decode: the upper 16 bits of the decoded float32 are the wire bits, the rest zero.
      const word = new Uint32Array(Float32Array.of(back[i] as number).buffer)[0] as number;
      assert.equal(word & 0xffff, 0);
    }
  });
});

describe("encodeRows / gatherEncodedRows / decodeRows", () => {
  const H = 256;
  const random = seededRandom(11);
  const rows = Float32Array.from({ length: 6 * H }, () => random() * 4 - 2);

  for (const dtype of [WireDtype.FLOAT32, WireDtype.BF16, WireDtype.FP8_E4M3] as const) {
    it(`gathers ${WireDtype[dtype]} rows: the gathered rows decode like the same rows of the whole batch`, () => {
      const whole = encodeRows(rows, H, dtype);
      const all = decodeRows(whole.data, whole.scales, dtype, 6, H);
      const pick = Int32Array.of(4, 0, 5);
      const part = gatherEncodedRows(whole, pick);
      assert.equal(part.numRows, 3);
      const got = decodeRows(part.data, part.scales, dtype, 3, H);
      for (const [i, r] of pick.entries())
        assert.deepEqual(got.subarray(i * H, (i + 1) * H), all.subarray(r * H, (r + 1) * H));
      if (dtype === WireDtype.FLOAT32) assert.deepEqual(all, rows);
    });
  }

  it("refuses byte lengths that do not match [rows, hidden], naming the field", () => {
    const enc = encodeRows(rows, H, WireDtype.FP8_E4M3);
    throwsCode(
      () => decodeRows(enc.data.subarray(1), enc.scales, WireDtype.FP8_E4M3, 6, H),
      Code.INVALID_ARGUMENT,
      "rows",
    );
    throwsCode(
      () => decodeRows(enc.data, enc.scales.subarray(4), WireDtype.FP8_E4M3, 6, H),
      Code.INVALID_ARGUMENT,
      "row_scales",
    );
    throwsCode(
      () => decodeRows(new Uint8Array(6 * H * 2), new Uint8Array(8), WireDtype.BF16, 6, H),
      Code.INVALID_ARGUMENT,
      "row_scales",
    );
    throwsCode(
      () => decodeRows(new Uint8Array(6 * H * 4), new Uint8Array(0), WireDtype.FLOAT32, 6, H + 1),
      Code.INVALID_ARGUMENT,
      "rows",
    );
    const badScale = new Uint8Array(enc.scales);
    new Float32Array(badScale.buffer)[2] = -1;
    throwsCode(
      () => decodeRows(enc.data, badScale, WireDtype.FP8_E4M3, 6, H),
      Code.INVALID_ARGUMENT,
      "row_scales",
    );
    throwsCode(
      () => encodeRows(new Float32Array(64), 64, WireDtype.FP8_E4M3),
      Code.INVALID_ARGUMENT,
      "hidden_size",
    );
  });
});

describe("addEncodedRows (combine)", () => {
  it("adds FLOAT32 sums into the right rows exactly, and BF16 sums as their bf16 values", () => {
    const H = 4;
    const out = Float32Array.from({ length: 3 * H }, (_, i) => i);
    const sums = Float32Array.of(0.5, 0.5, 0.5, 0.5, 1.1, 1.2, 1.3, 1.4);
    addEncodedRows(out, Int32Array.of(2, 0), encodeSums(sums, WireDtype.FLOAT32), WireDtype.FLOAT32, H);
    const row0 = [0, 1, 2, 3].map((v, h) => Math.fround(v + (sums[H + h] as number)));
    assert.deepEqual(Array.from(out), [...row0, 4, 5, 6, 7, 8.5, 9.5, 10.5, 11.5]);
    const before = Float32Array.from(out);
    const bf = encodeSums(sums, WireDtype.BF16);
    addEncodedRows(out, Int32Array.of(1, 2), bf, WireDtype.BF16, H);
    const rounded = decodeRows(bf, new Uint8Array(0), WireDtype.BF16, 2, H);
    for (let h = 0; h < H; h++) {
      assert.equal(out[H + h], Math.fround((before[H + h] as number) + (rounded[h] as number)));
      assert.equal(out[2 * H + h], Math.fround((before[2 * H + h] as number) + (rounded[H + h] as number)));
    }
    throwsCode(
      () => addEncodedRows(out, Int32Array.of(0), bf, WireDtype.BF16, H),
      Code.INVALID_ARGUMENT,
      "sums",
    );
  });
});
