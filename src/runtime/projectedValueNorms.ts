/**
 * CriticalKV's per-entry value weight for one layer, computed on the GPU
 * (`src/gpu/kernels/valueOutputNorms.ts`): for each KV head and cached position i, the L1 norm of
 * v_i·W_o^(h) averaged over the query heads h of the head's GQA group — the
 * `LayerScoresInput.projectedValueNorms` a press declaring `needs.projectedValueNorms` reads.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { valueOutputNorms } from "../gpu/kernels/valueOutputNorms.ts";
import { runOps } from "../gpu/op.ts";
import type { ModelConfig } from "../model/types.ts";

/**
 * The norms of one layer: `values[kv]` are the KV head's cached values (`n × headDim` f32), `wo` is
 * the layer's output projection as f32 `[hidden][numHeads · headDim]` (o_proj's weight, row-major).
 * Returns one float64 array of `n` per KV head.
 */
export async function projectedValueNorms(
  ctx: GpuContext,
  config: ModelConfig,
  values: Float32Array[],
  wo: Float32Array,
): Promise<Float64Array[]> {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, hiddenSize: hidden } = config;
  const g = H / Hkv;
  const n = values[0].length / D;
  if (wo.length !== hidden * H * D) {
    throw new RangeError(`o_proj must be ${hidden}×${H * D}, got ${wo.length} values`);
  }
  for (const [what, bytes] of [["values", n * D * 4], ["o_proj group", g * hidden * D * 4]]) {
    if ((bytes as number) > ctx.maxBindingBytes) {
      throw new RangeError(
        `CriticalKV's value norms bind ${bytes} bytes of ${what}; the device allows ${ctx.maxBindingBytes}`,
      );
    }
  }
  const out = ctx.createBuffer(H * n * 4, undefined, "value output norms");
  const buffers: GPUBuffer[] = [out];
  try {
    for (let kv = 0; kv < Hkv; kv++) {
      // The group's query-head slices, each transposed to [hidden][headDim] (a channel's weights
      // contiguous).
      const slices = new Float32Array(g * hidden * D);
      for (let j = 0; j < g; j++) {
        const h = kv * g + j;
        for (let c = 0; c < hidden; c++) {
          slices.set(wo.subarray(c * H * D + h * D, c * H * D + (h + 1) * D), (j * hidden + c) * D);
        }
      }
      const wBuf = ctx.upload(slices, undefined, `o_proj slices ${kv}`);
      const vBuf = ctx.upload(values[kv], undefined, `values ${kv}`);
      buffers.push(wBuf, vBuf);
      const ops = Array.from({ length: g }, (_, j) =>
        valueOutputNorms(ctx, {
          values: vBuf,
          w: wBuf,
          wOffset: j * hidden * D,
          out,
          outOffset: (kv * g + j) * n,
          rows: n,
          headDim: D,
          hidden,
        })).flat();
      runOps(ctx, ops);
      for (const op of ops) op.destroy();
    }
    const norms = await ctx.readF32(out, 0, H * n);
    return Array.from({ length: Hkv }, (_, kv) => {
      const mean = new Float64Array(n);
      for (let h = kv * g; h < (kv + 1) * g; h++) {
        for (let i = 0; i < n; i++) mean[i] += norms[h * n + i];
      }
      for (let i = 0; i < n; i++) mean[i] /= g;
      return mean;
    });
  } finally {
    for (const b of buffers) ctx.release(b);
  }
}
