/**
 * Kernel throughput against the machine's own limit, measured in the same run: our matmul
 * (GEMM, GEMV) and decode attention next to the machine's native library on the same shapes —
 * numpy's BLAS on a CPU adapter, PyTorch's CUDA kernels (cuBLAS) on a GPU adapter when python3
 * has them. GPU shapes are larger, so that a run outgrows the caches and the launch overhead.
 *
 * @module
 */

import type { GpuContext } from "../src/gpu/device.ts";
import { decodeAttention } from "../src/gpu/kernels/decodeAttention.ts";
import { matmul } from "../src/gpu/kernels/matmul.ts";
import { createKvCacheLayer, releaseKvCacheLayer } from "../src/gpu/kvCache.ts";
import { type GpuOp, runOps } from "../src/gpu/op.ts";
import { uploadMatrix } from "../src/gpu/weights.ts";
import { workgroupPrefillAttention } from "../src/gpu/kernels/workgroupPrefillAttention.ts";
import { prefillAttentionFor } from "../src/runtime/prefillAttentionChoice.ts";

/** One throughput figure. */
export interface ThroughputRow {
  /** What was measured. */
  kernel: string;
  /** Ours: GFLOP/s (GEMM, prefill attention) or GB/s (GEMV, decode attention). */
  ours: number;
  /** The native reference on this machine, same shape, or null when unavailable. */
  native: number | null;
  /** What the native figure is (e.g. "numpy (CPU BLAS)", "torch cuBLAS f32"). */
  reference: string;
  /** Unit of both. */
  unit: "GFLOP/s" | "GB/s";
}

/** Milliseconds per dispatch; repetitions grow until one timing spans ≥ 300 ms (sync floor). */
async function timeOp(ctx: GpuContext, op: GpuOp, minReps: number): Promise<number> {
  runOps(ctx, [op]); // warm-up (pipeline compilation)
  await ctx.sync();
  for (let reps = minReps;; reps *= 4) {
    const t = performance.now();
    runOps(ctx, Array(reps).fill(op));
    await ctx.sync();
    const ms = performance.now() - t;
    if (ms >= 300 || reps >= 16384) return ms / reps;
  }
}

/** Runs a python3 snippet that prints one number; null (with a note on stderr) on failure. */
async function python(code: string): Promise<number | null> {
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", code],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && Number.isFinite(value)) return value;
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    console.error(`kernel throughput: python3 reference failed: ${why}`);
  } catch (e) {
    console.error(`kernel throughput: python3 unavailable: ${(e as Error).message}`);
  }
  return null;
}

/**
 * A python3 program timing `expr` (after `setup`) and printing `work / seconds / 1e9`. With
 * `cuda`, tensors live on the GPU (torch) and the timing synchronises the device.
 */
function timedSnippet(cuda: boolean, setup: string, expr: string, work: number): string {
  const sync = cuda ? "torch.cuda.synchronize()" : "0";
  return [
    cuda
      ? "import torch,time;torch.backends.cuda.matmul.allow_tf32=False;d='cuda'"
      : "import numpy as np,time",
    setup,
    `f=lambda: ${expr}`,
    // Results are dropped as they come (a list of them ran a GPU out of memory).
    `for _ in range(3): f()\n${sync};n=1;t=time.perf_counter()`,
    `while True:\n for _ in range(n): f()\n ${sync};s=time.perf_counter()-t\n if s>0.3: break\n n*=4;t=time.perf_counter()`,
    `print(${work}*n/s/1e9)`,
  ].join("\n");
}

/** True when python3 has torch with a CUDA device. */
async function hasTorchCuda(): Promise<boolean> {
  const code = "import importlib.util as u;print(0 if u.find_spec('torch') is None else " +
    "__import__('torch').cuda.is_available()+0)";
  return (await python(code)) === 1;
}

/**
 * Measures GEMM, GEMV, decode and prefill attention against the native reference. On a CPU
 * adapter: GEMM 1024³ f32, GEMV 2048² bf16, decode attention of 8 heads (2 KV) over 16K keys,
 * prefill attention of 512 queries over 4K keys; on a GPU: GEMM 4096³ (f32 weights, and bf16
 * weights against cuBLAS bf16 tensor cores, those in f32 and, with shader-f16, f16 arithmetic),
 * GEMV 8192² bf16, decode attention of 32 heads (8 KV) over 16K keys — each several times the
 * GPU's L2 cache — and prefill attention of 512 queries over 16K keys.
 */
export async function kernelThroughput(ctx: GpuContext, reps = 5): Promise<ThroughputRow[]> {
  const gpu = !ctx.isFallbackAdapter;
  const cuda = gpu && await hasTorchCuda();
  const ref = cuda ? "torch (cuBLAS)" : "numpy (CPU BLAS)";
  const rows: ThroughputRow[] = [];
  const gemmDtypes = gpu ? (["F32", "BF16"] as const) : (["F32"] as const);
  // On GPUs the workgroup-memory GEMMs are measured next to the register GEMM (the default).
  const gemmPaths = gpu ? (["gemm", "tiled", "tiled128"] as const) : (["gemm"] as const);
  // GEMM arithmetic: the context's choice; on GPUs with shader-f16 the bf16 GEMMs also in f16.
  const both = gpu && ctx.features.shaderF16;
  for (const dtype of gemmDtypes) {
    const maths = both && dtype === "BF16" ? (["f32", "f16"] as const) : [ctx.kernels.math];
    for (const path of gemmPaths) {
      for (const math of maths) {
        const n = gpu ? 4096 : 1024;
        const bytes = dtype === "F32" ? 4 : 2;
        const w = uploadMatrix(ctx, { dtype, shape: [n, n], data: new Uint8Array(n * n * bytes) });
        const x = ctx.createBuffer(n * n * 4), y = ctx.createBuffer(n * n * 4);
        const ms = await timeOp(ctx, matmul(ctx, { x, w, y, m: n, path, math }), reps);
        const t = dtype === "F32" ? "float32" : "bfloat16";
        const native = await python(
          cuda
            ? timedSnippet(
              true,
              `a=torch.rand(${n},${n},device=d,dtype=torch.${t});b=a.clone()`,
              "a@b.T",
              2 * n ** 3,
            )
            : timedSnippet(
              false,
              `a=np.random.rand(${n},${n}).astype(np.float32);b=a.copy()`,
              "a@b",
              2 * n ** 3,
            ),
        );
        rows.push({
          kernel: `GEMM ${n}×${n}×${n}, ${dtype.toLowerCase()} weights (${math} arithmetic)${
            path === "gemm" ? "" : `, ${path}`
          }`,
          ours: (2 * n ** 3) / ms / 1e6,
          native,
          reference: cuda
            ? `torch cuBLAS ${dtype === "F32" ? "f32 (no TF32)" : "bf16 (tensor cores)"}`
            : ref,
          unit: "GFLOP/s",
        });
        ctx.release(x);
        ctx.release(y);
        for (const b of new Set(w.segments.map((seg) => seg.buffer))) ctx.release(b);
      }
    }
  }
  {
    const n = gpu ? 8192 : 2048;
    const w = uploadMatrix(ctx, { dtype: "BF16", shape: [n, n], data: new Uint8Array(n * n * 2) });
    const x = ctx.createBuffer(n * 4), y = ctx.createBuffer(n * 4);
    const ms = await timeOp(ctx, matmul(ctx, { x, w, y, m: 1 }), reps * 4);
    // numpy has no bf16: f32 weights there, counted in the bytes it reads.
    const native = await python(
      cuda
        ? timedSnippet(
          true,
          `w=torch.rand(${n},${n},device=d,dtype=torch.bfloat16);x=torch.rand(1,${n},device=d,dtype=torch.bfloat16)`,
          "x@w.T",
          n * n * 2,
        )
        : timedSnippet(
          false,
          `w=np.random.rand(${n},${n}).astype(np.float32);x=np.random.rand(${n}).astype(np.float32)`,
          "w@x",
          n * n * 4,
        ),
    );
    rows.push({
      kernel: `GEMV ${n}×${n} bf16 (weight bytes read)`,
      ours: (n * n * 2) / ms / 1e6,
      native,
      reference: cuda ? "torch cuBLAS bf16" : `${ref}, f32 weights`,
      unit: "GB/s",
    });
    ctx.release(x);
    ctx.release(y);
  }
  {
    const [H, Hkv, D, L] = gpu ? [32, 8, 64, 16384] : [8, 2, 64, 16384];
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
    // The same attention as matmuls: scores, softmax, weighted sum per KV group, f32.
    const lib = cuda ? "torch" : "np";
    const setup = cuda
      ? `k=torch.rand(${Hkv},${L},${D},device=d);v=torch.rand_like(k);q=torch.rand(${Hkv},${
        H / Hkv
      },${D},device=d)`
      : `k=np.random.rand(${Hkv},${L},${D}).astype(np.float32);v=np.random.rand(${Hkv},${L},${D}).astype(np.float32);q=np.random.rand(${Hkv},${
        H / Hkv
      },${D}).astype(np.float32)`;
    const softmax = cuda
      ? "torch.softmax(q@k.transpose(1,2)/8.0,-1)@v"
      : "(lambda s: (lambda e: e/e.sum(-1,keepdims=True))(np.exp(s-s.max(-1,keepdims=True))))(q@k.transpose(0,2,1)/8.0)@v";
    const native = await python(timedSnippet(cuda, setup, softmax, bytes));
    rows.push({
      kernel: `decode attention H${H}/KV${Hkv} D${D}, ${L / 1024}K keys, f32 (KV bytes read)`,
      ours: bytes / ms / 1e6,
      native,
      reference: `${lib === "torch" ? "torch (CUDA)" : "numpy"} matmuls + softmax`,
      unit: "GB/s",
    });
    ctx.release(q);
    ctx.release(out);
    releaseKvCacheLayer(ctx, cache);
  }
  rows.push(...await prefillAttentionRows(ctx, gpu, cuda, reps));
  return rows;
}

/**
 * Prefill attention: a chunk of M queries at the end of L cached keys (causal), the device's
 * kernel (and on GPUs the workgroup-tiled candidate), in GFLOP/s of the causal work (4·D FLOPs
 * per query head and visible key), against the same attention in numpy (matmuls, mask, softmax)
 * or torch's `scaled_dot_product_attention` with the same mask.
 */
async function prefillAttentionRows(
  ctx: GpuContext,
  gpu: boolean,
  cuda: boolean,
  reps: number,
): Promise<ThroughputRow[]> {
  const [H, Hkv, D, L, M] = gpu ? [32, 8, 64, 16384, 512] : [8, 2, 64, 4096, 512];
  const G = H / Hkv;
  const cache = createKvCacheLayer(ctx, {
    numKvHeads: Hkv,
    headDim: D,
    capacity: L,
    lengths: Array(Hkv).fill(L),
  });
  const q = ctx.upload(Float32Array.from({ length: M * H * D }, (_, i) => Math.sin(i)));
  const out = ctx.createBuffer(M * H * D * 4);
  const visible = M * (L - M) + (M * (M + 1)) / 2; // keys seen, summed over the queries
  const flops = 4 * D * H * visible;
  // Query i (0-based in the chunk) sees keys 0 … L − M + i.
  const setup = cuda
    ? `import torch.nn.functional as F;q=torch.rand(1,${H},${M},${D},device=d);k=torch.rand(1,${Hkv},${L},${D},device=d);v=torch.rand_like(k);mask=torch.arange(${L},device=d)[None,:]<=(${
      L - M
    }+torch.arange(${M},device=d))[:,None]`
    : `q=np.random.rand(${Hkv},${
      G * M
    },${D}).astype(np.float32);k=np.random.rand(${Hkv},${L},${D}).astype(np.float32);v=np.random.rand(${Hkv},${L},${D}).astype(np.float32);mask=np.tile(np.arange(${L})[None,:]<=(${
      L - M
    }+np.arange(${M}))[:,None],(${G},1))`;
  const expr = cuda
    ? "F.scaled_dot_product_attention(q,k,v,attn_mask=mask,enable_gqa=True)"
    : "(lambda s: (lambda e: e/e.sum(-1,keepdims=True))(np.exp(s-s.max(-1,keepdims=True))))(np.where(mask,q@k.transpose(0,2,1)/8.0,-np.inf))@v";
  const native = await python(timedSnippet(cuda, setup, expr, flops));
  const chosen = prefillAttentionFor(ctx);
  const kernels = gpu && chosen !== workgroupPrefillAttention
    ? [chosen, workgroupPrefillAttention]
    : [chosen];
  const rows: ThroughputRow[] = [];
  for (const kernel of kernels) {
    const ms = await timeOp(ctx, kernel(ctx, { cache, q, out, m: M, numHeads: H }), reps);
    rows.push({
      kernel: `prefill attention (${kernel.name}) ${M} queries × ${
        L / 1024
      }K keys, causal, H${H}/KV${Hkv} D${D}, f32`,
      ours: flops / ms / 1e6,
      native,
      reference: cuda ? "torch scaled_dot_product_attention" : "numpy matmuls + mask + softmax",
      unit: "GFLOP/s",
    });
  }
  ctx.release(q);
  ctx.release(out);
  releaseKvCacheLayer(ctx, cache);
  return rows;
}
