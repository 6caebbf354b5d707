/**
 * Kernel throughput against the machine's own limit, measured in the same run: our matmul
 * (GEMM, f32 weights, 1024³) and GEMV (bf16 weights, 2048², bandwidth) next to a native BLAS
 * (numpy's, through python3, when present).
 *
 * @module
 */

import type { GpuContext } from "../src/gpu/device.ts";
import { matmul } from "../src/gpu/kernels/matmul.ts";
import { type GpuOp, runOps } from "../src/gpu/op.ts";
import { uploadMatrix } from "../src/gpu/weights.ts";

/** One throughput figure. */
export interface ThroughputRow {
  /** What was measured. */
  kernel: string;
  /** Ours: GFLOP/s (GEMM) or GB/s (GEMV). */
  ours: number;
  /** Native BLAS on this machine, same shape, or null when unavailable. */
  native: number | null;
  /** Unit of both. */
  unit: "GFLOP/s" | "GB/s";
}

async function timeOp(ctx: GpuContext, op: GpuOp, reps: number): Promise<number> {
  runOps(ctx, [op]); // warm-up (pipeline compilation)
  await ctx.sync();
  const t = performance.now();
  runOps(ctx, Array(reps).fill(op));
  await ctx.sync();
  return (performance.now() - t) / reps;
}

async function numpy(code: string): Promise<number | null> {
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", code],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    return out.success && Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/** Measures GEMM and GEMV; `reps` dispatches per timing. */
export async function kernelThroughput(ctx: GpuContext, reps = 5): Promise<ThroughputRow[]> {
  const rows: ThroughputRow[] = [];
  {
    const n = 1024;
    const w = uploadMatrix(ctx, { dtype: "F32", shape: [n, n], data: new Uint8Array(n * n * 4) });
    const x = ctx.createBuffer(n * n * 4), y = ctx.createBuffer(n * n * 4);
    const ms = await timeOp(ctx, matmul(ctx, { x, w, y, m: n }), reps);
    const native = await numpy(
      "import numpy as np,time;a=np.random.rand(1024,1024).astype(np.float32);b=a.copy();a@b;" +
        "t=time.perf_counter();[a@b for _ in range(20)];print(2*1024**3*20/(time.perf_counter()-t)/1e9)",
    );
    rows.push({
      kernel: "GEMM 1024×1024×1024 f32",
      ours: (2 * n ** 3) / ms / 1e6,
      native,
      unit: "GFLOP/s",
    });
  }
  {
    const n = 2048;
    const w = uploadMatrix(ctx, { dtype: "BF16", shape: [n, n], data: new Uint8Array(n * n * 2) });
    const x = ctx.createBuffer(n * 4), y = ctx.createBuffer(n * 4);
    const ms = await timeOp(ctx, matmul(ctx, { x, w, y, m: 1 }), reps * 4);
    // numpy has no bf16: the same bytes as f16 weights (2 bytes each), a GEMV, in GB/s.
    const native = await numpy(
      "import numpy as np,time;w=np.random.rand(2048,2048).astype(np.float32);x=np.random.rand(2048).astype(np.float32);w@x;" +
        "t=time.perf_counter();[w@x for _ in range(200)];print(2048*2048*4*200/(time.perf_counter()-t)/1e9)",
    );
    rows.push({
      kernel: "GEMV 2048×2048 (weights bytes read)",
      ours: (n * n * 2) / ms / 1e6,
      native,
      unit: "GB/s",
    });
  }
  return rows;
}
