/**
 * Keeps the last W queries of one layer (after RoPE), for presses re-applied while decoding
 * (`decoding(every=N)`, kvpress's DecodingPress scoring from its buffered hidden states) or
 * between prefill chunks (`chunked`): of the pass's `m` rows of `q` (`[m][H·D]` f32), the last
 * min(m, W) go to ring slot `P mod W`, P the row's absolute position, recorded beside it.
 *
 * One workgroup of 64 threads copying vec4s. Bindings: 0 params, 1 q (read), 2 positions u32
 * (read), 3 ring f32 `[W][H·D]`, 4 ring positions u32 `[W]`.
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../device.ts";
import { dispatchOp, type GpuOp, packParams } from "../op.ts";

/** A layer's query ring: the last `slots` steps' queries and their positions. */
export interface QueryRing {
  /** f32 `[slots][H·D]`. */
  queries: GPUBuffer;
  /** u32 `[slots]`: the position of each slot's query (0xffffffff: empty). */
  positions: GPUBuffer;
  /** Slots (W). */
  slots: number;
}

/** Sentinel of an empty slot in {@link QueryRing.positions}. */
export const EMPTY_SLOT = 0xffffffff;

/** Allocates a ring of `slots` queries of `width` (H·D) floats, every slot empty. */
export function createQueryRing(ctx: GpuContext, slots: number, width: number): QueryRing {
  return {
    queries: ctx.createBuffer(slots * width * 4, undefined, "query ring"),
    positions: ctx.upload(new Uint32Array(slots).fill(EMPTY_SLOT), undefined, "query ring pos"),
    slots,
  };
}

const CODE = `struct Params { HD4: u32, W: u32, pos0: u32, m: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> ring: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> ringPos: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {
  for (var r = p.m - min(p.m, p.W); r < p.m; r++) {
    let P = pos[p.pos0 + r];
    let slot = P % p.W;
    for (var x = li; x < p.HD4; x += 64u) {
      ring[slot * p.HD4 + x] = q[r * p.HD4 + x];
    }
    if (li == 0u) { ringPos[slot] = P; }
  }
}
`;

/**
 * Prepares the copy of the last queries of a pass of `m` rows (default 1; `width` = H·D floats, a
 * multiple of 4) into `ring`.
 */
export function captureQuery(
  ctx: GpuContext,
  a: {
    q: BufferRef;
    width: number;
    positions: BufferRef;
    positionsOffset: number;
    ring: QueryRing;
    m?: number;
  },
): GpuOp {
  if (a.width % 4 !== 0) throw new RangeError(`captureQuery: width ${a.width} not a multiple of 4`);
  return dispatchOp(ctx, {
    label: "captureQuery",
    pipeline: ctx.pipeline("captureQuery", () => CODE),
    params: packParams([
      ["u32", a.width / 4],
      ["u32", a.ring.slots],
      ["u32", a.positionsOffset],
      ["u32", a.m ?? 1],
    ]),
    buffers: [a.q, a.positions, a.ring.queries, a.ring.positions],
    workgroups: [1],
  });
}
