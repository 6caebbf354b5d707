/**
 * Embedding lookup: `out[m, :] = table[ids[idsOffset + m], :] · scale` (Gemma's √hidden; 1 for
 * the Llama family) for a `[V, H]` table in its
 * checkpoint dtype, reading token ids from a GPU buffer (so the previous step's sampled id feeds
 * the next step without a readback). Ids ≥ V leave their output row untouched.
 *
 * Bindings: 0 params, 1 table segment, 2 ids u32 (read), 3 out f32 `[M, ldo]` (read_write).
 * One dispatch per table segment; each writes only rows whose id falls in its range.
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, grid2d, packParams, sequenceOp } from "../op.ts";
import type { GpuMatrix } from "../weights.ts";
import { weightDecl, type WeightStorage, weightStorage } from "../wgslDtype.ts";

/** Arguments of {@link embedding}. */
export interface EmbeddingArgs {
  /** The `[V, H]` table. */
  table: GpuMatrix;
  /** Token ids (u32). */
  ids: BufferRef;
  /** Index of the first id in `ids`. */
  idsOffset?: number;
  /** Number of tokens. */
  m: number;
  /** Output `[m, H]` f32. */
  out: BufferRef;
  /** Elements between output rows (default H). */
  outRowStride?: number;
  /** Factor on every value (default 1: the row as stored). */
  scale?: number;
}

function code(dtype: WeightStorage): string {
  return `struct Params { H: u32, M: u32, idsOffset: u32, rowStart: u32, rows: u32, stride4: u32,
  ldo: u32, scale: f32 };
@group(0) @binding(0) var<uniform> p: Params;
${weightDecl("T", 1, dtype)}
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + li;
  let H4 = (p.H + 3u) / 4u;
  let m = i / H4;
  let h4 = i % H4;
  if (m >= p.M) { return; }
  let id = ids[p.idsOffset + m];
  if (id < p.rowStart || id - p.rowStart >= p.rows) { return; }
  let v = T4((id - p.rowStart) * p.stride4 + h4);
  for (var j = 0u; j < 4u; j++) {
    let h = h4 * 4u + j;
    if (h < p.H) { out[m * p.ldo + h] = v[j] * p.scale; }
  }
}
`;
}

/** Prepares the lookup of `m` ids (one dispatch per table segment). */
export function embedding(ctx: GpuContext, a: EmbeddingArgs): GpuOp {
  const t = a.table;
  const pipeline = ctx.pipeline(`embedding:${t.dtype}`, () => code(weightStorage(ctx, t.dtype)));
  const threads = a.m * Math.ceil(t.cols / 4);
  const ops = t.segments.map((seg, si) =>
    dispatchOp(ctx, {
      label: `embedding(${t.name}#${si})`,
      pipeline,
      params: packParams([
        ["u32", t.cols],
        ["u32", a.m],
        ["u32", a.idsOffset ?? 0],
        ["u32", seg.rowStart],
        ["u32", seg.rows],
        ["u32", t.rowStride / 4],
        ["u32", a.outRowStride ?? t.cols],
        ["f32", a.scale ?? 1],
      ]),
      buffers: [{ buffer: seg.buffer, offset: seg.offset, size: seg.size }, a.ids, a.out],
      workgroups: grid2d(Math.ceil(threads / 64)),
    })
  );
  return ops.length === 1 ? ops[0] : sequenceOp(`embedding(${t.name})`, ops);
}
