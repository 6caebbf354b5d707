/**
 * Kernel throughput against the machine's own limit, measured in the same run: our matmul
 * (GEMM, f32 weights, 1024³) and GEMV (bf16 weights, 2048², bandwidth) next to a native BLAS
 * (numpy's, through python3, when present).
 *
 * @module
 */

import type { GpuContext } from "../src/gpu/device.ts";
import { decodeAttention } from "../src/gpu/kernels/decodeAttention.ts";
import { matmul } from "../src/gpu/kernels/matmul.ts";
import { createKvCacheLayer, releaseKvCacheLayer } from "../src/gpu/kvCache.ts";
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

/**
 * Measures GEMM, GEMV and decode attention (one query over a 16K-key layer of the 'small' shape,
 * KV bytes read per second, against the same attention written in numpy); `reps` dispatches per
 * timing.
 */
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
  {
    const [H, Hkv, D, L] = [8, 2, 64, 16384];
    const cache = createKvCacheLayer(ctx, {
      numKvHeads: Hkv,
      headDim: D,
      capacity: L,
      lengths: Array(Hkv).fill(L),
    });
    const q = ctx.upload(Float32Array.from({ length: H * D }, (_, i) => Math.sin(i)));
    const out = ctx.createBuffer(H * D * 4);
    const ms = await timeOp(ctx, decodeAttention(ctx, { cache, q, out, numHeads: H }), reps * 4);
    const bytes = 2 * Hkv * L * D * 4; // K and V, f32
    // The same attention in numpy (BLAS matmuls): scores, softmax, weighted sum per KV group, f32.
    const native = await numpy(
      "import numpy as np,time;H,G,D,L=8,2,64,16384;k=np.random.rand(G,L,D).astype(np.float32);" +
        "v=np.random.rand(G,L,D).astype(np.float32);q=np.random.rand(G,H//G,D).astype(np.float32)\n" +
        "def att():\n s=(q@k.transpose(0,2,1))/8.0;s=np.exp(s-s.max(-1,keepdims=True));" +
        "return (s/s.sum(-1,keepdims=True))@v\n" +
        "att();t=time.perf_counter();[att() for _ in range(20)];" +
        "print(2*G*L*D*4*20/(time.perf_counter()-t)/1e9)",
    );
    rows.push({
      kernel: "decode attention H8/KV2 D64, 16K keys (KV bytes read)",
      ours: bytes / ms / 1e6,
      native,
      unit: "GB/s",
    });
    ctx.release(q);
    ctx.release(out);
    releaseKvCacheLayer(ctx, cache);
  }
  return rows;
}
