/** KIVI packing: real packed bits, round-trip error ≤ scale/2, exact byte accounting. */
import assert from "node:assert/strict";
import {
  dequantizeKeys,
  dequantizeValues,
  packedCounts,
  quantizedBytes,
  quantizeKeys,
  quantizeValues,
  quantParams,
} from "../../src/plugins/quantPress.ts";
import { lcg } from "./_inputs.ts";
import { compilePolicy } from "../../src/plan/compile.ts";

Deno.test("quant: hand-packed 2-bit values and keys", () => {
  // One token, 4 channels, group 4, 2 bits: min 0, max 3 → scale 1, codes 0, 3, 1, 2.
  const params = { bits: 2, group: 4 };
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
      const params = { bits, group };
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
    () => quantizeKeys(new Float32Array(3 * 4), 4, { bits: 4, group: 2 }),
    /whole blocks/,
  );
});

Deno.test("quant: KIVI's residual — keys packed R at a time, values exactly R; exact bytes", () => {
  // Worked from jy-yuan/KIVI models/llama_kivi.py: prefill keeps `T % R` keys and `min(T, R)`
  // values in full precision (R = 32).
  const R = 32;
  assert.deepEqual(packedCounts(0, R), { keys: 0, values: 0 });
  assert.deepEqual(packedCounts(31, R), { keys: 0, values: 0 });
  assert.deepEqual(packedCounts(32, R), { keys: 32, values: 0 });
  assert.deepEqual(packedCounts(33, R), { keys: 32, values: 1 });
  assert.deepEqual(packedCounts(63, R), { keys: 32, values: 31 });
  assert.deepEqual(packedCounts(64, R), { keys: 64, values: 32 });
  assert.deepEqual(packedCounts(1000, R), { keys: 992, values: 968 });
  // R = 128 (the KIVI paper's runs) with G = 32: keys still leave 128 at a time.
  assert.deepEqual(packedCounts(300, 128), { keys: 256, values: 172 });
  // 1024 tokens, d = 128, 4-bit: keys 1024 packed (0 full), values 992 packed (32 full).
  const params = { kbits: 4, vbits: 4, group: 32, residual: 32 };
  const bytes = quantizedBytes(1024, 128, params);
  assert.equal(bytes.codes, 1024 * 64 + 992 * 64); // 16 words = 64 bytes per token
  assert.equal(bytes.scales, 8 * ((1024 / 32) * 128 + 992 * 4));
  assert.equal(bytes.residual, 32 * 128 * 2); // 32 value rows, f16
  assert.equal(bytes.total, bytes.codes + bytes.scales + bytes.residual);
  const ratio = bytes.total / (2 * 1024 * 128 * 2);
  assert.ok(ratio > 0.25 && ratio < 0.4, `ratio ${ratio}`); // f32 (min, scale) pairs cost 1/8
  // Key and value bits apart: 2-bit keys (8 words per token), 8-bit values (32 words).
  const mixed = quantizedBytes(70, 128, { kbits: 2, vbits: 8, group: 32, residual: 32 }, 4);
  assert.deepEqual(mixed, {
    codes: 4 * (64 * 8 + 38 * 32),
    scales: 8 * (2 * 128 + 38 * 4),
    residual: (6 + 32) * 128 * 4,
    total: 4 * (64 * 8 + 38 * 32) + 8 * (2 * 128 + 38 * 4) + (6 + 32) * 128 * 4,
  });
});

Deno.test("quant: residual must be a multiple of group; kbits / vbits default to bits", () => {
  const check = (src: string) => compilePolicy(src).diagnostics.map((d) => d.message);
  assert.deepEqual(check("else -> quant(group=32, residual=48)"), [
    "quant: 'residual' (48) must be a multiple of 'group' (32): KIVI packs keys 48 at a time, " +
    "in blocks of 32",
  ]);
  assert.deepEqual(check("else -> quant(residual=0)").length, 1);
  assert.deepEqual(check("else -> quant(bits=2, group=32, residual=128)"), []);
  const plan = compilePolicy("else -> quant(bits=2, vbits=4)").plan!;
  assert.deepEqual(quantParams(plan.rules[0].pipeline[0].params), {
    kbits: 2,
    vbits: 4,
    group: 32,
    residual: 32,
  });
  const error = compilePolicy("else -> quant(group=32, residual=48)").diagnostics[0];
  assert.equal(`${error.span.line}:${error.span.column}`, "1:9");
});

Deno.test("quant: a group or residual too large to run is refused at its literal", () => {
  const check = (src: string) => compilePolicy(src).diagnostics.map((d) => d.message);
  assert.deepEqual(check("else -> quant(group=1000000)"), [
    "quant: 'group' must be at most 1024, not 1000000",
  ]);
  assert.deepEqual(check("else -> quant(group=1024, residual=65536)"), []);
  assert.equal(check("else -> quant(residual=65537)").length, 1);
});
