/**
 * Decode attention over a quantised layer equals attention computed on the CPU over the
 * reference's dequantised entries plus the full-precision ones, in the state KIVI's attention sees
 * at each decode step (`KiviStream`: the new token appended, not yet packed) — with key and value
 * bits apart, GQA groups of 1 to 12
 * (12: two chunks of 6 heads per thread), ragged and empty heads, an unquantised head in the same
 * layer, splits that straddle key blocks and the packed / residual boundary, value groups that are
 * not multiples of 4, and blocks packed between decode steps; both split passes (thread per split
 * for CPU adapters, workgroup per split for GPUs).
 */
import { kvAppend } from "../../src/gpu/kernels/kvAppend.ts";
import { quantAppend, quantSettle } from "../../src/gpu/kernels/quantAppend.ts";
import { quantConvert } from "../../src/gpu/kernels/quantConvert.ts";
import { quantDecodeAttention } from "../../src/gpu/kernels/quantDecodeAttention.ts";
import type { GpuContext } from "../../src/gpu/device.ts";
import { createKvCacheLayer, type KvDType } from "../../src/gpu/kvCache.ts";
import { runOps } from "../../src/gpu/op.ts";
import { createQuantKvLayer } from "../../src/gpu/quantKvCache.ts";
import { gpuTest, runAndFree } from "./_gpu.ts";
import { RefKvCache } from "./_kvReference.ts";
import { KiviStream, refQuantStream } from "./_quantReference.ts";
import { assertClose, randomF32, refAttend, rng } from "./_reference.ts";

interface Case {
  kbits: number;
  vbits: number;
  group: number;
  residual: number;
  D: number;
  gqa: number;
  dtype: KvDType;
  splitSize?: number;
  /** Entries per KV head before decoding (0: an empty head). */
  caps: number[];
  /** Per KV head: quantised (true) or a plain ring (false). */
  quantised: boolean[];
  /** Per KV head: whether decode appends reach it (false: it keeps its prefill entries only). */
  grows: boolean[];
  /** Split pass. */
  kernel: "thread" | "workgroup";
}

/** Prefill `caps`, convert, then decode 2R + 1 steps (attention also before the first append). */
async function runCase(ctx: GpuContext, c: Case): Promise<void> {
  const { kbits, vbits, group, residual, D, gqa, dtype, caps } = c;
  const rand = rng(7 * kbits + vbits + D + 13 * gqa);
  const p = { kbits, vbits, group, residual };
  const Hkv = caps.length, H = Hkv * gqa, T0 = Math.max(...caps), scale = 1 / Math.sqrt(D);
  const steps = 2 * residual + 1;
  const src = createKvCacheLayer(ctx, { numKvHeads: Hkv, headDim: D, capacity: caps, dtype });
  const ref = new RefKvCache(Hkv, dtype);
  const k = randomF32(rand, T0 * Hkv * D, 2), v = randomF32(rand, T0 * Hkv * D);
  runAndFree(ctx, [kvAppend(ctx, { cache: src, k: ctx.upload(k), v: ctx.upload(v), m: T0 })]);
  ref.append(k, v, T0, D, caps);
  const residuals = c.quantised.map((qz) => (qz ? residual : null));
  const cache = createQuantKvLayer(ctx, {
    headDim: D,
    dtype,
    quant: { kbits, vbits, group, residuals },
    maxEntries: caps.map((n, h) => n + (c.grows[h] ? steps : 0)),
  });
  runAndFree(ctx, [quantConvert(ctx, { src, dst: cache })]);
  const kivi = caps.map((n) => {
    const s = new KiviStream(residual);
    s.prefill(n);
    return s;
  });
  const q = ctx.createBuffer(H * D * 4), out = ctx.createBuffer(H * D * 4);
  const kn = ctx.createBuffer(Hkv * D * 4), vn = ctx.createBuffer(Hkv * D * 4);
  const append = quantAppend(ctx, { cache, k: kn, v: vn, m: 1 });
  const settle = quantSettle(ctx, cache);
  const attend = quantDecodeAttention(ctx, {
    cache,
    q,
    out,
    numHeads: H,
    splitSize: c.splitSize,
    kernel: c.kernel,
  });
  for (let step = -1; step < steps; step++) {
    const qs = randomF32(rand, H * D, 2);
    ctx.write(q, 0, qs);
    if (step >= 0) {
      const ks = randomF32(rand, Hkv * D, 2), vs = randomF32(rand, Hkv * D);
      ctx.write(kn, 0, ks);
      ctx.write(vn, 0, vs);
      runOps(ctx, [append, attend]);
      ref.append(ks, vs, 1, D, c.grows.map((g) => (g ? 1e9 : 0)));
      kivi.forEach((s, h) => c.grows[h] && s.append());
    } else {
      runOps(ctx, [attend]);
    }
    const got = await ctx.readF32(out, 0, H * D);
    for (let kvh = 0; kvh < Hkv; kvh++) {
      const n = { keys: kivi[kvh].keysPacked, values: kivi[kvh].valuesPacked };
      const s = residuals[kvh] === null ? null : refQuantStream(ref.k[kvh], D, p, n);
      const sv = residuals[kvh] === null ? null : refQuantStream(ref.v[kvh], D, p, n);
      const keys = s ? s.attendKeys : ref.k[kvh], values = sv ? sv.attendValues : ref.v[kvh];
      for (let h = kvh * gqa; h < (kvh + 1) * gqa; h++) {
        const want = keys.length === 0
          ? new Float64Array(D)
          : refAttend(qs.subarray(h * D, h * D + D), keys, values, scale).out;
        assertClose(got.subarray(h * D, h * D + D), want, 1e-4, 0, `step ${step} head ${h}`);
      }
    }
    runOps(ctx, [settle]);
    kivi.forEach((s) => s.settle());
  }
  settle.destroy();
  append.destroy();
  attend.destroy();
}

const base = { caps: [97, 77, 57], quantised: [true, true, false], grows: [true, true, true] };
// [key bits, value bits, group, residual, head_dim, GQA group, dtype, split size]
type Row = [number, number, number, number, number, number, KvDType, number | undefined];
const cases: Row[] = [
  [4, 4, 32, 32, 36, 2, "f32", 16],
  [2, 2, 8, 16, 20, 3, "f16", 8],
  [8, 4, 6, 12, 12, 1, "f32", undefined],
  // Splits of 12 straddle blocks of 8 and the packed / full boundaries of keys and values.
  [4, 2, 8, 8, 16, 4, "f32", 12],
  [2, 8, 16, 16, 24, 8, "f16", 20],
  // 12 heads per KV head: two chunks of 6; value groups of 3 channels.
  [8, 8, 3, 6, 8, 12, "f32", 7],
  [4, 4, 5, 10, 28, 6, "f16", 9],
  // The runtime's default quantisation and split size.
  [4, 4, 32, 32, 64, 4, "f32", undefined],
];

for (const kernel of ["thread", "workgroup"] as const) {
  for (const [kbits, vbits, group, residual, D, gqa, dtype, splitSize] of cases) {
    gpuTest(
      `quant attention (${kernel}) K${kbits}V${vbits} G${group} R${residual} D${D} GQA${gqa} ${dtype} split ${
        splitSize ?? "default"
      }: packed + full precision as KIVI attends`,
      (ctx) =>
        runCase(ctx, {
          ...base,
          kbits,
          vbits,
          group,
          residual,
          D,
          gqa,
          dtype,
          splitSize,
          kernel,
        }),
    );
  }
}

for (const kernel of ["thread", "workgroup"] as const) {
  gpuTest(
    `quant attention (${kernel}): empty heads (never filled, or filled only by decode) give zeros`,
    (ctx) =>
      runCase(ctx, {
        kernel,
        kbits: 4,
        vbits: 4,
        group: 4,
        residual: 4,
        D: 8,
        gqa: 2,
        dtype: "f32",
        splitSize: 8,
        caps: [41, 0, 0, 23],
        quantised: [true, true, true, false],
        grows: [true, false, true, true],
      }),
  );
}
