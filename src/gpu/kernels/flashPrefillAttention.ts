/**
 * Register-blocked flash prefill attention: the same contract as `prefillAttention.ts` (causal,
 * GQA, chunked over a ragged cache that already holds the chunk; optional SnapKV observation
 * window), but each thread owns a block of `QT` consecutive queries × `HT` query heads of one KV
 * group, so every key and value row it loads is reused `QT·HT` times (GQA heads share their KV
 * head; adjacent queries share all but one key). Online softmax over tiles of 16 keys with
 * constant trip counts (keys past a query's causal limit are masked): the block's scores and
 * softmax state are named variables, unrolled over the block and the tile.
 *
 * The head dimension is a loop with a uniform bound (`p.d4`), never unrolled: the output rows
 * accumulate in `out` itself and queries are re-read from `q` per tile. A version unrolled over
 * the head dimension too (every q and o element in a register) was up to 15% faster on llvmpipe
 * but took 50–100 s to compile there at head_dim 128 (never finished at 256); this one compiles in
 * about a second (`bench/coldCompile.ts`, `bench/NOTES.md` section 6). Private arrays indexed in
 * a loop are avoided: Mesa turns them into if-ladders (slow to compile and to run).
 *
 * A head's logit-bias row (`kvCache.ts` meta) is honoured, in the observation window too.
 *
 * Query row i (0-based in the chunk) of head h attends KV head `h / group` entries
 * `0 .. len − m + i`, `len` being that head's length after the append.
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read), 5 out f32
 * (read_write), 6 obs f32 (read_write, only with `window > 0`).
 *
 * @module
 */

import type { GpuContext } from "../device.ts";
import { type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp } from "../op.ts";
import {
  type PrefillAttentionArgs,
  prefillLayout,
  prefillParams,
  prefillPreambleWgsl,
} from "./prefillAttention.ts";
import { kvHeadMetaWgsl } from "./attentionCommon.ts";
import { each, maxOf } from "./wgslUnroll.ts";

/** Arguments of {@link flashPrefillAttention}: those of `prefillAttention` plus the block shape. */
export interface FlashPrefillAttentionArgs extends PrefillAttentionArgs {
  /** Queries per thread (default `8 / headsPerThread`). */
  queriesPerThread?: number;
  /** Query heads per thread, a divisor of the GQA group (default: the largest of 4, 2, 1). */
  headsPerThread?: number;
}

/** Keys per online-softmax step (16 measured best of 8, 12, 16, 32 on llvmpipe). */
const TILE = 16;

function code(dtype: KvStorage, D4: number, QT: number, HT: number, withObs: boolean): string {
  const R = QT * HT;
  const rows = (f: (r: number, a: number, b: number) => string, sep = "\n") =>
    each(R, (r) => f(r, Math.floor(r / HT), r % HT), sep);
  const tiles = (f: (t: number) => string, sep = "\n") => each(TILE, f, sep);
  const obs = !withObs ? "" : each(QT, (a) => `
  if (i0 + ${a}u < p.M && i0 + ${a}u + p.window >= p.M) {
    let w = i0 + ${a}u + p.window - p.M;
${
    each(HT, (b) => {
      const r = a * HT + b;
      return `    {
      let at = ((h0 + ${b}u) * p.window + w) * p.obsStride;
      let inv = 1.0 / l${r};
      for (var j = 0u; j < p.obsStride; j++) {
        var pr = 0.0;
        if (j < lim${a}) {
          let kb = (base + j) * D4;
          var s = vec4<f32>(0.0);
          for (var d = 0u; d < p.d4; d++) { s += Q[qb${r} + d] * KC4(kb + d); }
          let bias = select(0.0, biasValue, base + j == biasRow);
          pr = exp(((s.x + s.y) + (s.z + s.w)) * p.scale + bias - m${r}) * inv;
        }
        obs[at + j] = pr;
      }
    }`;
    })
  }
  }`);
  return `${prefillPreambleWgsl(dtype, D4, withObs, true)}
const NEG = -3.0e38;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i0 = gid.x * ${QT}u;
  if (i0 >= p.M) { return; }
  let kvh = gid.y / p.chunks;
  let h0 = kvh * p.group + (gid.y % p.chunks) * ${HT}u;
${kvHeadMetaWgsl()}
${
    each(QT, (a) =>
      `  let qi${a} = min(i0 + ${a}u, p.M - 1u);
  let ok${a} = i0 + ${a}u < p.M;
  let lim${a} = u32(max(i32(len) - i32(p.M) + i32(qi${a}) + 1, 0));`)
  }
${
    rows((r, a, b) =>
      `  let qb${r} = p.q04 + qi${a} * p.ldq4 + (h0 + ${b}u) * D4;
  let ob${r} = qi${a} * p.ldo4 + (h0 + ${b}u) * D4;
  var m${r} = NEG;
  var l${r} = 0.0;`
    )
  }
  let jmax = lim${QT - 1};
  for (var j = 0u; j < jmax; j += ${TILE}u) {
${tiles((t) => `    let row${t} = (base + min(j + ${t}u, jmax - 1u)) * D4;`)}
${rows((r) => `    var s${r} = array<f32, ${TILE}>();`)}
    for (var d = 0u; d < p.d4; d++) {
${tiles((t) => `      let k${t} = KC4(row${t} + d);`)}
${
    rows((r) =>
      `      { let qv = Q[qb${r} + d];
${tiles((t) => `        s${r}[${t}] += dot(qv, k${t});`)} }`
    )
  }
    }
${
    rows((r, a) =>
      `    var p${r}: array<f32, ${TILE}>;
    var c${r}: f32;
    {
${
        tiles((t) =>
          `      let e${t} = base + min(j + ${t}u, jmax - 1u);
      let x${t} = select(NEG, s${r}[${t}] * p.scale + select(0.0, biasValue, e${t} == biasRow), j + ${t}u < lim${a});`
        )
      }
      let mnew = ${maxOf([`m${r}`, ...Array.from({ length: TILE }, (_, t) => `x${t}`)])};
      c${r} = exp(m${r} - mnew);
${tiles((t) => `      p${r}[${t}] = select(0.0, exp(x${t} - mnew), j + ${t}u < lim${a});`)}
      l${r} = l${r} * c${r} + ${tiles((t) => `p${r}[${t}]`, " + ")};
      m${r} = mnew;
    }`
    )
  }
    let first = j == 0u;
    for (var d = 0u; d < p.d4; d++) {
${tiles((t) => `      let v${t} = VC4(row${t} + d);`)}
${
    rows((r, a) =>
      `      if (ok${a}) {
        let prev = select(out[ob${r} + d] * c${r}, vec4<f32>(0.0), first);
        out[ob${r} + d] = prev + ${tiles((t) => `p${r}[${t}] * v${t}`, " + ")};
      }`
    )
  }
    }
  }
${
    rows((r, a) =>
      `  if (ok${a}) {
    let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
    for (var d = 0u; d < p.d4; d++) { out[ob${r} + d] = select(vec4<f32>(0.0), out[ob${r} + d] * inv, l${r} > 0.0); }
  }`
    )
  }${obs}
}
`;
}

/** The default heads per thread for a GQA group: the largest of 4, 2, 1 dividing it. */
export function defaultHeadsPerThread(group: number): number {
  return group % 4 === 0 ? 4 : group % 2 === 0 ? 2 : 1;
}

/** Prepares register-blocked prefill attention for one chunk of one layer (one dispatch). */
export function flashPrefillAttention(ctx: GpuContext, a: FlashPrefillAttentionArgs): GpuOp {
  const c = a.cache;
  const H = a.numHeads, D = c.headDim, D4 = D / 4;
  if (H % c.numKvHeads !== 0) {
    throw new RangeError(`flashPrefillAttention: ${H} query heads for ${c.numKvHeads} KV heads`);
  }
  const group = H / c.numKvHeads;
  const HT = a.headsPerThread ?? defaultHeadsPerThread(group);
  const QT = a.queriesPerThread ?? Math.max(1, Math.floor(8 / HT));
  if (!(Number.isInteger(QT) && QT >= 1 && QT <= 8) || group % HT !== 0) {
    throw new RangeError(`flashPrefillAttention: ${QT} queries × ${HT} heads per thread`);
  }
  const layout = prefillLayout("flashPrefillAttention", a);
  const chunks = group / HT;
  return dispatchOp(ctx, {
    label: "flashPrefillAttention",
    pipeline: ctx.pipeline(
      `flashPrefillAttn:${c.dtype}:${D4}:${QT}:${HT}:${layout.withObs}`,
      () => code(kvStorage(ctx, c.dtype), D4, QT, HT, layout.withObs),
    ),
    params: prefillParams(a, layout, chunks),
    buffers: layout.buffers,
    workgroups: [Math.ceil(a.m / QT / 64), c.numKvHeads * chunks],
  });
}
