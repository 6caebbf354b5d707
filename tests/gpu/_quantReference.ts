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

/** Reads head `h`'s first `keys` packed keys (a multiple of G) and first `values` packed values. */
export async function readHeadPacked(
  ctx: GpuContext,
  layer: QuantKvLayer,
  h: number,
  keys: number,
  values: number,
): Promise<HeadPacked> {
  const D = layer.headDim, { kbits, vbits, group } = layer.quant;
  const KW = codeWords(D, kbits), VW = codeWords(D, vbits), NG = Math.ceil(D / group);
  const ks = layer.keyBases[h], vs = layer.valueBases[h];
  const kc = await ctx.readU32(layer.codes, ks * KW, Math.max(1, keys * KW));
  const vc = await ctx.readU32(layer.codes, layer.valueCodes + vs * VW, Math.max(1, values * VW));
  const kp = await ctx.readF32(
    layer.params,
    2 * (ks / group) * D,
    Math.max(1, 2 * keys / group * D),
  );
  const vp = await ctx.readF32(
    layer.params,
    layer.valueParams + 2 * vs * NG,
    Math.max(1, 2 * values * NG),
  );
  return {
    keys: { codes: kc.slice(0, keys * KW), params: kp.slice(0, 2 * keys / group * D) },
    values: { codes: vc.slice(0, values * VW), params: vp.slice(0, 2 * values * NG) },
  };
}

/**
 * KIVI's cache of one head, simulated as `models/llama_kivi.py` (jy-yuan/KIVI) keeps it: a
 * packed part and a full-precision part for keys and for values. Prefill packs all keys but the
 * last `T mod R` and all values but the last R; a decode step appends the new token to both full
 * parts, attends, then packs the R full keys once R have gathered and the oldest full value once
 * there are more than R. Only counts are kept here; {@link refQuantStream} packs the rows.
 */
export class KiviStream {
  /** Packed keys. */
  keysPacked = 0;
  /** Full-precision keys. */
  keysFull = 0;
  /** Packed values. */
  valuesPacked = 0;
  /** Full-precision values. */
  valuesFull = 0;

  constructor(readonly residual: number) {}

  /** KIVI's prefill of `T` tokens. */
  prefill(T: number): void {
    const R = this.residual;
    this.keysFull = T % R === 0 ? 0 : T < R ? T : T % R;
    this.keysPacked = T - this.keysFull;
    this.valuesFull = T <= R ? T : R;
    this.valuesPacked = T - this.valuesFull;
  }

  /** A decode step's append (the state attention sees). */
  append(): void {
    this.keysFull++;
    this.valuesFull++;
  }

  /** After attention: pack R gathered keys, and the oldest value beyond R. */
  settle(): void {
    if (this.keysFull === this.residual) {
      this.keysPacked += this.keysFull;
      this.keysFull = 0;
    }
    if (this.valuesFull > this.residual) {
      this.valuesPacked++;
      this.valuesFull--;
    }
  }
}

/**
 * The reference's packing of a stream of entries (`[T][D]`, as stored) with the first `keys` keys
 * and `values` values packed, and the entries attention should see (dequantised, then full).
 */
export function refQuantStream(
  rows: number[][],
  D: number,
  p: QuantParams,
  counts: { keys: number; values: number },
) {
  const flat = (to: number) => Float32Array.from(rows.slice(0, to).flat());
  const kq = { bits: p.kbits, group: p.group }, vq = { bits: p.vbits, group: p.group };
  const keys = quantizeKeys(flat(counts.keys), D, kq);
  const values = quantizeValues(flat(counts.values), D, vq);
  const kd = dequantizeKeys(keys, D, kq), vd = dequantizeValues(values, D, vq);
  const split = (a: Float32Array, n: number) =>
    Array.from({ length: n }, (_, t) => a.subarray(t * D, t * D + D));
  return {
    keys,
    values,
    /** Keys as attention should see them: dequantised packed entries, then full precision. */
    attendKeys: [...split(kd, counts.keys), ...rows.slice(counts.keys)] as ArrayLike<number>[],
    attendValues: [
      ...split(vd, counts.values),
      ...rows.slice(counts.values),
    ] as ArrayLike<number>[],
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
