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
 * the head dimension (every q and o element in a register) was up to 15% faster on llvmpipe but
 * took 50–100 s to compile there at head_dim 128 (never finished at 256); this one compiles in
 * about a second (`bench/coldCompile.ts`, `bench/NOTES.md` section 6). Private arrays indexed in
 * a loop are avoided: Mesa turns them into if-ladders (slow to compile and to run).
 *
 * Mesa's llvmpipe also ends every loop of a shader invocation once their iterations add up to
 * 65535 (`../loopBudget.ts`): silently wrong attention past ~16K keys at head_dim 128.
 * So the keys are split into ranges of {@link keysPerDispatch} run by successive dispatches of
 * the same kernel (phase 0), each resuming the rows' softmax state (running max and sum, in a
 * state buffer the op owns); then phase 1 dispatches normalise the rows and write the
 * observation window's probabilities, again one key range each. On a GPU one range covers all.
 *
 * A head's logit-bias row (`kvCache.ts` meta) is honoured, in the observation window too.
 *
 * Query row i (0-based in the chunk) of head h attends KV head `h / group` entries
 * `0 .. len − m + i`, `len` being that head's length after the append.
 *
 * Bindings: 0 params, 1 q f32 (read), 2 meta, 3 K cache, 4 V cache (read), 5 out f32
 * (read_write), 6 obs f32 (read_write, only with `window > 0`), then the softmax state f32.
 *
 * @module
 */

import { type GpuContext, GpuUnavailableError } from "../device.ts";
import { type KvStorage, kvStorage } from "../kvCache.ts";
import { dispatchOp, type GpuOp, sequenceOp } from "../op.ts";
import {
  type PrefillAttentionArgs,
  prefillLayout,
  prefillParams,
  prefillPreambleWgsl,
} from "./prefillAttention.ts";
import { kvHeadMetaWgsl } from "./attentionCommon.ts";
import { each, maxOf } from "./wgslUnroll.ts";
import { blockDotsWgsl, defaultHeadsPerThread, tilesPerDispatch } from "./blockedDots.ts";

/** Arguments of {@link flashPrefillAttention}: those of `prefillAttention` plus the block shape. */
export interface FlashPrefillAttentionArgs extends PrefillAttentionArgs {
  /** Queries per thread (default `8 / headsPerThread`). */
  queriesPerThread?: number;
  /** Query heads per thread, a divisor of the GQA group (default: the largest of 4, 2, 1). */
  headsPerThread?: number;
  /** Keys per dispatch, a multiple of 16 (default {@link keysPerDispatch}; tests set less). */
  keysPerDispatch?: number;
}

/** Keys per online-softmax step (16 measured best of 8, 12, 16, 32 on llvmpipe). */
const TILE = 16;

/**
 * Keys one dispatch attends on a software adapter: as many tiles as fit the loop budget (with
 * room to spare) at `1 + 2·D4` counted iterations per tile; unbounded on GPUs.
 */
export function keysPerDispatch(ctx: GpuContext, D4: number): number {
  return tilesPerDispatch(ctx, TILE, 1 + 2 * D4);
}

function code(dtype: KvStorage, D4: number, QT: number, HT: number, withObs: boolean): string {
  const R = QT * HT;
  const rows = (f: (r: number, a: number, b: number) => string, sep = "\n") =>
    each(R, (r) => f(r, Math.floor(r / HT), r % HT), sep);
  const tiles = (f: (t: number) => string, sep = "\n") => each(TILE, f, sep);
  // s_r[t] = q_r · k_t over the head dimension, keys at rows `row_t`
  const scores = (indent: string) => blockDotsWgsl(R, TILE, indent);
  // the logit of key j + t for row r (NEG past its causal limit)
  const logit = (r: number, a: number, t: number) =>
    `select(NEG, s${r}[${t}] * p.scale + select(0.0, biasValue, base + j + ${t}u == biasRow), j + ${t}u < lim${a} && j + ${t}u >= lo${a})`;
  const obs = !withObs ? "" : `
  if (i0 + ${QT}u + p.window > p.M) {
${
    rows((r, a, b) =>
      `    let win${r} = ok${a} && i0 + ${a}u + p.window >= p.M;
    let at${r} = ((h0 + ${b}u) * p.window + (i0 + ${a}u + p.window - p.M)) * p.obsStride;
    let inv${r} = 1.0 / l${r};`
    )
  }
    for (var j = p.k0; j < min(p.k1, p.obsStride); j += ${TILE}u) {
${tiles((t) => `      let row${t} = (base + min(j + ${t}u, max(len, 1u) - 1u)) * D4;`)}
${scores("      ")}
${
    rows((r, a) =>
      `      if (win${r}) {
${
        tiles((t) =>
          `        if (j + ${t}u < p.obsStride) { obs[at${r} + j + ${t}u] = exp(${
            logit(r, a, t)
          } - m${r}) * inv${r}; }`
        )
      }
      }`
    )
  }
    }
  }`;
  return `${prefillPreambleWgsl(dtype, D4, withObs, ["chunks", "d4", "k0", "k1", "phase"])}
@group(0) @binding(${withObs ? 7 : 6}) var<storage, read_write> state: array<vec2<f32>>;
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
  let lim${a} = u32(max(i32(len) - i32(p.M) + i32(qi${a}) + 1, 0));
  let lo${a} = windowStart(lim${a});`)
  }
${
    rows((r, a, b) =>
      `  let qb${r} = p.q04 + qi${a} * p.ldq4 + (h0 + ${b}u) * D4;
  let ob${r} = qi${a} * p.ldo4 + (h0 + ${b}u) * D4;
  let st${r} = qi${a} * p.H + h0 + ${b}u;
  var m${r} = NEG;
  var l${r} = 0.0;
  if (p.phase == 1u || p.k0 > 0u) { m${r} = state[st${r}].x; l${r} = state[st${r}].y; }`
    )
  }
  if (p.phase == 0u) {
    let jmax = min(lim${QT - 1}, p.k1);
    // From the first query's window start (a tile boundary; keys before it are no row's).
    for (var j = max(p.k0, lo0 / ${TILE}u * ${TILE}u); j < jmax; j += ${TILE}u) {
${tiles((t) => `      let row${t} = (base + min(j + ${t}u, jmax - 1u)) * D4;`)}
${scores("      ")}
${
    rows((r, a) =>
      `      var p${r}: array<f32, ${TILE}>;
      var c${r}: f32;
      // A row not started yet (every key so far before its window) has no output to rescale.
      let fresh${r} = m${r} == NEG;
      {
${tiles((t) => `        let x${t} = ${logit(r, a, t)};`)}
        let mnew = ${maxOf([`m${r}`, ...Array.from({ length: TILE }, (_, t) => `x${t}`)])};
        c${r} = exp(m${r} - mnew);
${
        tiles((t) =>
          `        p${r}[${t}] = select(0.0, exp(x${t} - mnew), j + ${t}u < lim${a} && j + ${t}u >= lo${a});`
        )
      }
        l${r} = l${r} * c${r} + ${tiles((t) => `p${r}[${t}]`, " + ")};
        m${r} = mnew;
      }`
    )
  }
      for (var d = 0u; d < p.d4; d++) {
${tiles((t) => `        let v${t} = VC4(row${t} + d);`)}
${
    rows((r, a) =>
      `        if (ok${a}) {
          let prev = select(out[ob${r} + d] * c${r}, vec4<f32>(0.0), fresh${r});
          out[ob${r} + d] = prev + ${tiles((t) => `p${r}[${t}] * v${t}`, " + ")};
        }`
    )
  }
      }
    }
${rows((r, a) => `    if (ok${a}) { state[st${r}] = vec2<f32>(m${r}, l${r}); }`)}
    return;
  }
  if (p.k0 == 0u) {
${
    rows((r, a) =>
      `    if (ok${a}) {
      let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
      for (var d = 0u; d < p.d4; d++) {
        out[ob${r} + d] = select(vec4<f32>(0.0), out[ob${r} + d] * inv, l${r} > 0.0);
      }
    }`
    )
  }
  }${obs}
}
`;
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
  const span = a.keysPerDispatch ?? keysPerDispatch(ctx, D4);
  if (!(Number.isInteger(span) && span > 0 && span % TILE === 0)) {
    throw new RangeError(`flashPrefillAttention: ${span} keys per dispatch`);
  }
  const keys = Math.max(1, ...c.capacities);
  const obsKeys = layout.withObs ? a.obsStride! : 1;
  const attendRanges = Math.ceil(keys / span), finishRanges = Math.ceil(obsKeys / span);
  if (attendRanges + finishRanges > 4096) {
    throw new GpuUnavailableError(
      `prefill attention over ${keys} keys would take ${attendRanges + finishRanges} dispatches ` +
        `per layer on this adapter (${ctx.adapterDescription}): use a GPU or a shorter prompt`,
    );
  }
  const state = ctx.createBuffer(a.m * H * 8, undefined, "flash softmax state");
  const pipeline = ctx.pipeline(
    `flashPrefillAttn:${c.dtype}:${D4}:${QT}:${HT}:${layout.withObs}`,
    () => code(kvStorage(ctx, c.dtype), D4, QT, HT, layout.withObs),
  );
  const ranges: Array<[number, number]> = [
    ...Array.from({ length: attendRanges }, (_, i): [number, number] => [0, i * span]),
    ...Array.from({ length: finishRanges }, (_, i): [number, number] => [1, i * span]),
  ];
  const ops = ranges.map(([phase, k0]) =>
    dispatchOp(ctx, {
      label: "flashPrefillAttention",
      pipeline,
      params: prefillParams(a, layout, [chunks, D4, k0, Math.min(k0 + span, 0xffffffff), phase]),
      buffers: [...layout.buffers, state],
      workgroups: [Math.ceil(a.m / QT / 64), c.numKvHeads * chunks],
    })
  );
  const op = sequenceOp("flashPrefillAttention", ops);
  return {
    label: op.label,
    encode: op.encode,
    destroy() {
      op.destroy();
      ctx.release(state);
    },
  };
}
