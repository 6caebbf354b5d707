/** KIVI packing: real packed bits, round-trip error ≤ scale/2, exact byte accounting. */
import assert from "node:assert/strict";
import {
  dequantizeKeys,
  dequantizeValues,
  quantizedBytes,
  quantizedTokenCount,
  quantizeKeys,
  quantizeValues,
} from "../../src/plugins/quantPress.ts";
import { lcg } from "./_inputs.ts";
import { compilePolicy } from "../../src/plan/compile.ts";

Deno.test("quant: hand-packed 2-bit values and keys", () => {
  // One token, 4 channels, group 4, 2 bits: min 0, max 3 → scale 1, codes 0, 3, 1, 2.
  const params = { bits: 2, group: 4, residual: 0 };
  const values = quantizeValues([0, 3, 1, 2], 4, params);
  assert.deepEqual(Array.from(values.codes), [0 | (3 << 2) | (1 << 4) | (2 << 6)]);
  assert.deepEqual(Array.from(values.params), [0, 1]);
  assert.deepEqual(Array.from(dequantizeValues(values, 4, params)), [0, 3, 1, 2]);
  // Keys: 4 tokens × 1 channel, one block: per channel min −1, max 5 → scale 2.
  const keys = quantizeKeys([-1, 5, 1, 2.2], 1, params);
  assert.deepEqual(Array.from(keys.params), [-1, 2]);
  assert.deepEqual(Array.from(keys.codes), [0, 3, 1, 2]); // one word per token (d·b ≤ 32)
  assert.deepEqual(Array.from(dequantizeKeys(keys, 1, params)), [-1, 5, 1, 3]);
  // Constant group: scale 0, exact.
  assert.deepEqual(
    Array.from(dequantizeValues(quantizeValues([7, 7, 7, 7], 4, params), 4, params)),
    [7, 7, 7, 7],
  );
});

Deno.test("quant: round trip within scale/2 for bits 2/4/8, partial value groups", () => {
  const rand = lcg(11);
  for (const bits of [2, 4, 8]) {
    for (const [headDim, group] of [[16, 8], [12, 32], [20, 8], [64, 32]]) {
      const params = { bits, group, residual: 0 };
      const tokens = 2 * group;
      const data = Float32Array.from({ length: tokens * headDim }, () => (rand() * 2 - 1) * 5);
      const keys = quantizeKeys(data, headDim, params);
      const values = quantizeValues(data, headDim, params);
      assert.equal(keys.codes.length, tokens * Math.ceil((headDim * bits) / 32));
      const backK = dequantizeKeys(keys, headDim, params);
      const backV = dequantizeValues(values, headDim, params);
      for (let t = 0; t < tokens; t++) {
        for (let c = 0; c < headDim; c++) {
          const i = t * headDim + c;
          const keyScale = keys.params[2 * (Math.floor(t / group) * headDim + c) + 1];
          const groups = Math.ceil(headDim / group);
          const valueScale = values.params[2 * (t * groups + Math.floor(c / group)) + 1];
          assert.ok(Math.abs(backK[i] - data[i]) <= keyScale / 2 + 1e-5, `key b=${bits}`);
          assert.ok(Math.abs(backV[i] - data[i]) <= valueScale / 2 + 1e-5, `value b=${bits}`);
          // Per-channel keys: scale = range of that channel in its block / (2^b − 1).
          let lo = Infinity, hi = -Infinity;
          for (
            let s = Math.floor(t / group) * group;
            s < (Math.floor(t / group) + 1) * group;
            s++
          ) {
            lo = Math.min(lo, data[s * headDim + c]);
            hi = Math.max(hi, data[s * headDim + c]);
          }
          assert.ok(Math.abs(keyScale - (hi - lo) / (2 ** bits - 1)) < 1e-5);
        }
      }
    }
  }
  assert.throws(
    () => quantizeKeys(new Float32Array(3 * 4), 4, { bits: 4, group: 2, residual: 0 }),
    /whole blocks/,
  );
});

Deno.test("quant: residual tokens leave in whole blocks; exact byte counts", () => {
  const params = { bits: 4, group: 32, residual: 32 };
  assert.equal(quantizedTokenCount(32, params), 0);
  assert.equal(quantizedTokenCount(63, params), 0);
  assert.equal(quantizedTokenCount(64, params), 32);
  assert.equal(quantizedTokenCount(1000, params), 960);
  // 1024 tokens, d = 128: Q = 992, residual 32.
  const bytes = quantizedBytes(1024, 128, params);
  assert.equal(bytes.codes, 2 * 992 * 16 * 4); // 16 words = 64 bytes per token
  assert.equal(bytes.scales, 8 * ((992 / 32) * 128 + 992 * 4));
  assert.equal(bytes.residual, 2 * 32 * 128 * 2);
  assert.equal(bytes.total, bytes.codes + bytes.scales + bytes.residual);
  // Against f16 (2 · T · d · 2 bytes): codes are exactly a quarter of the quantised part.
  const f16 = 2 * 1024 * 128 * 2;
  assert.equal(bytes.codes, (2 * 992 * 128 * 2) / 4);
  const ratio = bytes.total / f16;
  assert.ok(ratio > 0.25 && ratio < 0.4, `ratio ${ratio}`);
  // 2 bits, residual 0: an eighth plus scales; nothing quantised below one block.
  const two = quantizedBytes(64, 32, { bits: 2, group: 32, residual: 0 });
  assert.deepEqual(two, {
    codes: 2 * 64 * 2 * 4,
    scales: 8 * (2 * 32 + 64),
    residual: 0,
    total: 2048,
  });
  assert.equal(
    quantizedBytes(31, 32, { bits: 2, group: 32, residual: 0 }).residual,
    2 * 31 * 32 * 2,
  );
});

Deno.test("quant: a group or residual too large to run is refused at its literal", () => {
  const check = (src: string) => compilePolicy(src).diagnostics.map((d) => d.message);
  assert.deepEqual(check("else -> quant(group=1000000)"), [
    "quant: 'group' must be at most 1024, not 1000000",
  ]);
  assert.deepEqual(check("else -> quant(group=1024, residual=65536)"), []);
  assert.equal(check("else -> quant(residual=65537)").length, 1);
});
