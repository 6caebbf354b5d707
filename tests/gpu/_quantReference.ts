/**
 * Helpers for the quantised-cache tests: read one head's packed region back, and compare it with
 * the CPU reference (`src/plugins/quantPress.ts`) bit for bit.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ulpDistance } from "./_gpu.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import { codeWords, type QuantKvLayer } from "../../src/gpu/quantKvCache.ts";
import {
  dequantizeKeys,
  dequantizeValues,
  type PackedTensor,
  quantizedTokenCount,
  quantizeKeys,
  quantizeValues,
  type QuantParams,
} from "../../src/plugins/quantPress.ts";

/** One head's packed keys and values as stored on the GPU. */
export interface HeadPacked {
  /** Keys, in the reference layout. */
  keys: PackedTensor;
  /** Values, in the reference layout. */
  values: PackedTensor;
}

/** Reads the first `count` packed tokens of head `h` (count a multiple of G). */
export async function readHeadPacked(
  ctx: GpuContext,
  layer: QuantKvLayer,
  h: number,
  count: number,
): Promise<HeadPacked> {
  const D = layer.headDim, { bits, group } = layer.quant;
  const W = codeWords(D, bits), NG = Math.ceil(D / group), slot = layer.quantBases[h];
  const words = Math.max(1, count * W);
  const kc = await ctx.readU32(layer.codes, slot * W, words);
  const vc = await ctx.readU32(layer.codes, layer.valueCodes + slot * W, words);
  const kp = await ctx.readF32(
    layer.params,
    2 * (slot / group) * D,
    Math.max(1, 2 * count / group * D),
  );
  const vp = await ctx.readF32(
    layer.params,
    layer.valueParams + 2 * slot * NG,
    Math.max(1, 2 * count * NG),
  );
  return {
    keys: { codes: kc.slice(0, count * W), params: kp.slice(0, 2 * count / group * D) },
    values: { codes: vc.slice(0, count * W), params: vp.slice(0, 2 * count * NG) },
  };
}

/** The reference's packing of a stream of entries (`[T][D]`, as stored), and its dequantisation. */
export function refQuantStream(rows: number[][], D: number, p: QuantParams) {
  const Q = quantizedTokenCount(rows.length, p);
  const flat = (from: number, to: number) => Float32Array.from(rows.slice(from, to).flat());
  const keys = quantizeKeys(flat(0, Q), D, p), values = quantizeValues(flat(0, Q), D, p);
  const kd = dequantizeKeys(keys, D, p), vd = dequantizeValues(values, D, p);
  const split = (a: Float32Array) =>
    Array.from({ length: Q }, (_, t) => a.subarray(t * D, t * D + D));
  return {
    Q,
    keys,
    values,
    /** Keys as attention should see them: dequantised packed entries, then the residual. */
    attendKeys: [...split(kd), ...rows.slice(Q)] as ArrayLike<number>[],
    attendValues: [...split(vd), ...rows.slice(Q)] as ArrayLike<number>[],
  };
}

/**
 * Asserts GPU packing equals the reference: bit for bit with `bits = 0` (CPU adapters). With
 * `bits` > 0 (GPUs, where WGSL division is correct to 2.5 ulp only) mins and scales may be 4 ulp
 * off, and a code may differ by one step where the scaled value sits on a rounding boundary: at
 * most 1% of the codes (and 2 at least).
 */
export function assertPackedEqual(
  got: PackedTensor,
  want: PackedTensor,
  what: string,
  bits = 0,
): void {
  assert.equal(got.codes.length, want.codes.length, `${what}: code words`);
  let offByOne = 0;
  for (let i = 0; i < want.codes.length; i++) {
    if (got.codes[i] === want.codes[i]) continue;
    const [g, w] = [got.codes[i], want.codes[i]].map((x) => x.toString(16));
    if (!bits) assert.fail(`${what}: code word ${i} is ${g}, want ${w}`);
    const mask = (1 << bits) - 1;
    for (let s = 0; s < 32; s += bits) {
      const d = Math.abs(((got.codes[i] >>> s) & mask) - ((want.codes[i] >>> s) & mask));
      if (d > 1) assert.fail(`${what}: code word ${i} is ${g}, want ${w} (a code ${d} steps off)`);
      if (d === 1) offByOne++;
    }
  }
  const codes = (want.codes.length * 32) / Math.max(bits, 1);
  if (offByOne > Math.max(2, codes / 100)) {
    assert.fail(`${what}: ${offByOne} of ${codes} codes one step off`);
  }
  assert.equal(got.params.length, want.params.length, `${what}: params`);
  for (let i = 0; i < want.params.length; i++) {
    const d = ulpDistance(got.params[i], want.params[i]);
    if (d > (bits ? 4 : 0)) {
      assert.fail(
        `${what}: ${i % 2 ? "scale" : "min"} ${i >> 1} is ${got.params[i]}, want ${
          want.params[i]
        } (${d} ulp apart)`,
      );
    }
  }
}
