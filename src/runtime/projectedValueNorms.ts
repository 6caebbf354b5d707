/**
 * CriticalKV's per-entry value weight for one layer, computed on the GPU: for each KV head and
 * cached position i, the L1 norm of v_i·W_o^(h) averaged over the query heads h of the head's
 * GQA group — the `LayerScoresInput.projectedValueNorms` a press declaring
 * `needs.projectedValueNorms` reads. The projections of a pass of rows are one GEMM against the
 * group's `W_o` slices (`matmul.ts`), their norms one dispatch (`valueOutputNorms.ts`).
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { matmul } from "../gpu/kernels/matmul.ts";
import { valueOutputNorms } from "../gpu/kernels/valueOutputNorms.ts";
import { type GpuOp, runOps } from "../gpu/op.ts";
import { type GpuMatrix, uploadMatrix } from "../gpu/weights.ts";
import type { ModelConfig } from "../model/types.ts";

/** Value rows per pass: a multiple of 64 (aligned offsets into the values) whose projections fit a binding. */
function passRows(ctx: GpuContext, width: number, n: number): number {
  const fit = Math.floor(ctx.maxBindingBytes / (width * 4) / 64) * 64;
  if (fit < 64) {
    throw new RangeError(
      `CriticalKV's value norms need ${64 * width * 4} bytes of projections per pass; ` +
        `the device binds ${ctx.maxBindingBytes}`,
    );
  }
  return Math.min(fit, Math.ceil(n / 64) * 64);
}

/**
 * The norms of one layer: `values[kv]` are the KV head's cached values (`n × headDim` f32), `wo` is
 * the layer's output projection as f32 `[hidden][numHeads · headDim]` (o_proj's weight, row-major).
 * Returns one float64 array of `n` per KV head. `rowsPerPass` (a multiple of 64) overrides the
 * rows projected at once (tests).
 */
export async function projectedValueNorms(
  ctx: GpuContext,
  config: Pick<ModelConfig, "numHeads" | "numKvHeads" | "headDim" | "hiddenSize">,
  values: Float32Array[],
  wo: Float32Array,
  rowsPerPass?: number,
): Promise<Float64Array[]> {
  const { numHeads: H, numKvHeads: Hkv, headDim: D, hiddenSize: hidden } = config;
  const g = H / Hkv;
  const n = values[0].length / D;
  if (wo.length !== hidden * H * D) {
    throw new RangeError(`o_proj must be ${hidden}×${H * D}, got ${wo.length} values`);
  }
  if (n * D * 4 > ctx.maxBindingBytes) {
    throw new RangeError(
      `CriticalKV's value norms bind ${
        n * D * 4
      } bytes of values; the device allows ${ctx.maxBindingBytes}`,
    );
  }
  const width = g * hidden; // projections per value row: every query head of the group
  const pass = rowsPerPass ?? passRows(ctx, width, n);
  if (pass % 64 !== 0 || pass < 64) throw new RangeError(`rowsPerPass ${pass}: a multiple of 64`);
  const out = ctx.createBuffer(H * n * 4, undefined, "value output norms");
  const y = ctx.createBuffer(Math.min(pass, n) * width * 4, undefined, "value projections");
  const buffers: GPUBuffer[] = [out, y];
  const matrices: GpuMatrix[] = [];
  try {
    for (let kv = 0; kv < Hkv; kv++) {
      // The group's query-head slices as one [g·hidden][headDim] matrix: y = v·Wᵀ.
      const slices = new Float32Array(width * D);
      for (let j = 0; j < g; j++) {
        const h = kv * g + j;
        for (let c = 0; c < hidden; c++) {
          slices.set(wo.subarray(c * H * D + h * D, c * H * D + (h + 1) * D), (j * hidden + c) * D);
        }
      }
      const w = uploadMatrix(ctx, {
        dtype: "F32",
        shape: [width, D],
        data: new Uint8Array(slices.buffer),
        name: `o_proj slices ${kv}`,
      });
      matrices.push(w);
      const v = ctx.upload(values[kv], undefined, `values ${kv}`);
      buffers.push(v);
      for (let base = 0; base < n; base += pass) {
        const m = Math.min(pass, n - base);
        const ops: GpuOp[] = [
          matmul(ctx, { x: { buffer: v, offset: base * D * 4, size: m * D * 4 }, w, y, m }),
          valueOutputNorms(ctx, {
            y,
            rows: m,
            groups: g,
            hidden,
            out,
            outOffset: kv * g * n + base,
            outStride: n,
          }),
        ];
        runOps(ctx, ops);
        for (const op of ops) op.destroy();
      }
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
    for (const w of matrices) for (const b of w.buffers) ctx.release(b);
  }
}
