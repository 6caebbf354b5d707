/**
 * The forward pass of a Llama-family decoder on the GPU, as a list of prepared kernels to record
 * into one command encoder — read it top to bottom like llama2.c's `forward()`:
 *
 * ```
 * x = embed[ids]
 * for each layer:
 *   xn = rmsnorm(x);  q, k, v = xn·Wqᵀ, xn·Wkᵀ, xn·Wvᵀ (+ biases);  rope(q, k)
 *   cache.append(k, v);  a = attention(q, cache)            (prefill: causal chunk; decode: split-KV)
 *   x += a·Woᵀ
 *   xn = rmsnorm(x);  x += (silu(xn·Wgateᵀ) * (xn·Wupᵀ))·Wdownᵀ
 * logits = rmsnorm(x)·lm_headᵀ;  then argmax / sample on the GPU
 * ```
 *
 * @module
 */

import type { BufferRef, GpuContext } from "../gpu/device.ts";
import { decodeAttention } from "../gpu/kernels/decodeAttention.ts";
import { embedding } from "../gpu/kernels/embedding.ts";
import { kvAppend } from "../gpu/kernels/kvAppend.ts";
import { matmul } from "../gpu/kernels/matmul.ts";
import { canFuseGemv, fusedGemv } from "../gpu/kernels/fusedGemv.ts";
import type { GpuMatrix, GpuVector } from "../gpu/weights.ts";
import { rmsNorm, rmsNormInPlace } from "../gpu/kernels/rmsNorm.ts";
import { rope } from "../gpu/kernels/rope.ts";
import { prefillAttentionFor } from "./prefillAttentionChoice.ts";
import { swiglu } from "../gpu/kernels/swiglu.ts";
import { residualAdd } from "../gpu/kernels/residualAdd.ts";
import type { KvCacheLayer } from "../gpu/kvCache.ts";
import { type CacheLayer, isQuantLayer } from "../gpu/quantKvCache.ts";
import { quantAppend, quantSettle } from "../gpu/kernels/quantAppend.ts";
import { kvFold } from "../gpu/kernels/kvFold.ts";
import { kvRerotate } from "../gpu/kernels/kvRerotate.ts";
import { quantDecodeAttention } from "../gpu/kernels/quantDecodeAttention.ts";
import type { GpuOp } from "../gpu/op.ts";
import type { GpuModelWeights } from "./gpuWeights.ts";
import { attentionScale } from "../model/attentionScale.ts";

/** Scratch buffers for a forward pass over up to `rows` tokens. */
export interface Activations {
  /** Maximum rows. */
  rows: number;
  /** Residual stream `[rows, hidden]`. */
  x: GPUBuffer;
  /** Normalised stream `[rows, hidden]`. */
  xn: GPUBuffer;
  /** Queries `[rows, H·D]`. */
  q: GPUBuffer;
  /** Keys `[rows, Hkv·D]`. */
  k: GPUBuffer;
  /** Values `[rows, Hkv·D]`. */
  v: GPUBuffer;
  /** Attention output `[rows, H·D]`. */
  attn: GPUBuffer;
  /** Gate projection `[rows, inter]`. */
  gate: GPUBuffer;
  /** silu(gate)·up `[rows, inter]`. */
  act: GPUBuffer;
  /** Up projection `[rows, inter]`. */
  up: GPUBuffer;
  /** Logits `[logitRows, vocab]`. */
  logits: GPUBuffer;
  /** Rows of `logits`. */
  logitRows: number;
  /** Token ids `[rows]` (u32) for prefill chunks. */
  ids: GPUBuffer;
  /** Positions `[rows]` (u32) for prefill chunks. */
  positions: GPUBuffer;
}

/** Allocates activations for `rows` tokens and `logitRows` rows of logits. */
export function createActivations(
  ctx: GpuContext,
  model: GpuModelWeights,
  rows: number,
  logitRows: number,
): Activations {
  const c = model.config;
  const f32 = (n: number, label: string) => ctx.createBuffer(Math.max(16, n * 4), undefined, label);
  return {
    rows,
    x: f32(rows * c.hiddenSize, "x"),
    xn: f32(rows * c.hiddenSize, "xn"),
    q: f32(rows * c.numHeads * c.headDim, "q"),
    k: f32(rows * c.numKvHeads * c.headDim, "k"),
    v: f32(rows * c.numKvHeads * c.headDim, "v"),
    attn: f32(rows * c.numHeads * c.headDim, "attn"),
    gate: f32(rows * c.intermediateSize, "gate"),
    act: f32(rows * c.intermediateSize, "act"),
    up: f32(rows * c.intermediateSize, "up"),
    logits: f32(logitRows * c.vocabSize, "logits"),
    logitRows,
    ids: f32(rows, "ids"),
    positions: f32(rows, "positions"),
  };
}

/** Frees activation buffers. */
export function releaseActivations(ctx: GpuContext, a: Activations): void {
  for (
    const b of [a.x, a.xn, a.q, a.k, a.v, a.attn, a.gate, a.act, a.up, a.logits, a.ids, a.positions]
  ) {
    ctx.release(b);
  }
}

/** Where the pass reads its token ids and positions (u32 buffers). */
export interface TokenSource {
  /** Ids buffer. */
  ids: BufferRef;
  /** First id. */
  idsOffset: number;
  /** Positions buffer. */
  positions: BufferRef;
  /** First position. */
  positionsOffset: number;
}

/** One recorded step: a kernel, or a buffer copy between passes. */
export type Step = GpuOp | { copy: [GPUBuffer, number, GPUBuffer, number, number] };

/** Options of {@link forwardSteps}. */
export interface ForwardOptions {
  /** Tokens in this pass. */
  m: number;
  /** `prefill`: causal attention over the chunk (any m); `decode`: split-KV attention (m = 1). */
  mode: "prefill" | "decode";
  /** Logits for every row (`all`) or only the last (`last`). */
  logits: "all" | "last";
  /** Where ids and positions come from. */
  source: TokenSource;
  /** Observation window per layer for SnapKV-style scoring: `[H][window][obsStride]`. */
  observation?: { window: number; stride: number; buffers: GPUBuffer[] };
  /**
   * Extra work per layer, recorded right after the layer's attention (layers that are not
   * quantised): the layer's cache then holds the chunk and `acts.q` its queries after RoPE (e.g.
   * the RazorAttention probe's scores, H2O's column sums or its decode-time eviction). Called
   * once when the steps are built; prepared steps are reused for every chunk of the same length
   * (and every decode step), so the op must not depend on the chunk's place.
   */
  afterAttention?: (
    layer: number,
    cache: KvCacheLayer,
    acts: Activations,
    source: TokenSource,
  ) => GpuOp | undefined;
}

/** Builds the forward pass over `m` tokens; ends with logits in `acts.logits`. */
export function forwardSteps(
  ctx: GpuContext,
  model: GpuModelWeights,
  cache: CacheLayer[],
  acts: Activations,
  o: ForwardOptions,
): Step[] {
  const c = model.config;
  const m = o.m;
  const steps: Step[] = [];
  steps.push(embedding(ctx, {
    table: model.embed,
    ids: o.source.ids,
    idsOffset: o.source.idsOffset,
    m,
    out: acts.x,
    scale: c.gemma3?.embedScale,
  }));
  // 1/√D, or Gemma 3's query_pre_attn_scalar^-1/2.
  const scale = attentionScale(c);
  model.layers.forEach((w, l) => {
    // Gemma 3's sliding layers: their own RoPE base, and a window (their rows are consecutive
    // positions: policies never compact them; after prefill, a ring of W, `slidingLayers.ts`).
    const slidingWindow = c.gemma3?.layerWindows[l] ?? undefined;
    const invFreq = slidingWindow ? model.localInvFreq! : model.invFreq;
    // Attention block.
    steps.push(...normProject(ctx, acts, m, w.inputNorm, c.rmsNormEps, [
      [w.q, acts.q, w.qBias],
      [w.k, acts.k, w.kBias],
      [w.v, acts.v, w.vBias],
    ]));
    if (w.qNorm && w.kNorm) {
      // Qwen3: each head of q and k RMS-normalised before RoPE.
      const eps = c.rmsNormEps;
      steps.push(rmsNormInPlace(ctx, { x: acts.q, weight: w.qNorm, m: m * c.numHeads, eps }));
      steps.push(rmsNormInPlace(ctx, { x: acts.k, weight: w.kNorm, m: m * c.numKvHeads, eps }));
    }
    const kv = cache[l];
    // Decode over a plain cache rotates q and k inside the append (one dispatch fewer).
    const fuseRope = o.mode === "decode" && !isQuantLayer(kv) && c.headDim % 8 === 0;
    if (!fuseRope) {
      steps.push(rope(ctx, {
        q: acts.q,
        k: acts.k,
        positions: o.source.positions,
        positionsOffset: o.source.positionsOffset,
        invFreq,
        m,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
      }));
    }
    if (isQuantLayer(kv)) {
      // KIVI layer (decode only), KIVI's step: append in full precision, attend (dequantising
      // the packed part), then pack the oldest value and any R gathered keys.
      if (o.mode !== "decode") throw new Error(`layer ${l} is quantised: prefill cannot extend it`);
      steps.push(quantAppend(ctx, { cache: kv, k: acts.k, v: acts.v, m }));
      steps.push(
        quantDecodeAttention(ctx, {
          cache: kv,
          q: acts.q,
          out: acts.attn,
          numHeads: c.numHeads,
          scale,
        }),
      );
      steps.push(quantSettle(ctx, kv));
    } else if (o.mode === "decode") {
      const rotate = fuseRope
        ? {
          q: acts.q,
          numHeads: c.numHeads,
          positions: o.source.positions,
          positionsOffset: o.source.positionsOffset,
          invFreq,
        }
        : undefined;
      if (kv.fold) steps.push(kvFold(ctx, { cache: kv, state: kv.fold, m }));
      steps.push(kvAppend(ctx, { cache: kv, k: acts.k, v: acts.v, m, rope: rotate }));
      if (kv.rerotate) steps.push(rerotateOp(ctx, kv, o.source, invFreq));
      // A sliding layer decodes through the prefill kernel, which applies its window; it sees
      // at most W keys, so the split-KV decode kernel would gain nothing there.
      steps.push(
        slidingWindow
          ? prefillAttentionFor(ctx)(ctx, {
            cache: kv,
            q: acts.q,
            out: acts.attn,
            m: 1,
            numHeads: c.numHeads,
            scale,
            slidingWindow,
          })
          : decodeAttention(ctx, {
            cache: kv,
            q: acts.q,
            out: acts.attn,
            numHeads: c.numHeads,
            scale,
          }),
      );
      const extra = o.afterAttention?.(l, kv, acts, o.source);
      if (extra) steps.push(extra);
    } else {
      if (kv.fold) steps.push(kvFold(ctx, { cache: kv, state: kv.fold, m }));
      steps.push(kvAppend(ctx, { cache: kv, k: acts.k, v: acts.v, m }));
      if (kv.rerotate) {
        if (m !== 1) throw new Error(`layer ${l} re-indexes positions: append one token at a time`);
        steps.push(rerotateOp(ctx, kv, o.source, invFreq));
      }
      const obs = o.observation;
      steps.push(
        prefillAttentionFor(ctx)(ctx, {
          cache: kv,
          q: acts.q,
          out: acts.attn,
          m,
          numHeads: c.numHeads,
          window: obs ? obs.window : 0,
          obs: obs?.buffers[l],
          obsStride: obs?.stride,
          scale,
          slidingWindow,
        }),
      );
      const extra = o.afterAttention?.(l, kv, acts, o.source);
      if (extra) steps.push(extra);
    }
    const eps = c.rmsNormEps;
    if (w.attnOutNorm) {
      // Gemma 3: the attention output is normalised before the residual add.
      steps.push(matmul(ctx, { x: acts.attn, w: w.o, y: acts.xn, m }));
      steps.push(rmsNormInPlace(ctx, { x: acts.xn, weight: w.attnOutNorm, m, eps }));
      steps.push(residualAdd(ctx, { acc: acts.x, x: acts.xn, n: m * c.hiddenSize }));
    } else {
      steps.push(matmul(ctx, { x: acts.attn, w: w.o, y: acts.x, m, accumulate: true }));
    }
    // MLP block.
    steps.push(...normProject(ctx, acts, m, w.postNorm, eps, [
      [w.gate, acts.gate, undefined],
      [w.up, acts.up, undefined],
    ]));
    if (w.mlpOutNorm) {
      // Gemma 3: GeGLU, and the MLP output normalised before the residual add.
      const n = c.intermediateSize;
      steps.push(
        swiglu(ctx, { gate: acts.gate, up: acts.up, out: acts.act, m, n, activation: "gelu_tanh" }),
      );
      steps.push(matmul(ctx, { x: acts.act, w: w.down, y: acts.xn, m }));
      steps.push(rmsNormInPlace(ctx, { x: acts.xn, weight: w.mlpOutNorm, m, eps }));
      steps.push(residualAdd(ctx, { acc: acts.x, x: acts.xn, n: m * c.hiddenSize }));
    } else if (fusible(ctx, m, [w.down])) {
      steps.push(fusedGemv(ctx, {
        x: acts.gate,
        input: { kind: "swiglu", up: acts.up },
        outputs: [{ w: w.down, y: acts.x, accumulate: true }],
      }));
    } else {
      steps.push(
        swiglu(ctx, { gate: acts.gate, up: acts.up, out: acts.act, m, n: c.intermediateSize }),
      );
      steps.push(matmul(ctx, { x: acts.act, w: w.down, y: acts.x, m, accumulate: true }));
    }
  });
  // Final norm and logits (for the last row only unless all are wanted).
  const rows = m;
  if (o.logits === "last" && m > 1) {
    const bytes = c.hiddenSize * 4;
    steps.push({ copy: [acts.x, (m - 1) * bytes, acts.xn, 0, bytes] });
    steps.push(
      rmsNorm(ctx, { x: acts.xn, weight: model.finalNorm, out: acts.x, m: 1, eps: c.rmsNormEps }),
    );
    steps.push(matmul(ctx, { x: acts.x, w: model.lmHead, y: acts.logits, m: 1 }));
    return steps;
  }
  if (rows > acts.logitRows) {
    throw new RangeError(`forward pass: ${rows} rows of logits but room for ${acts.logitRows}`);
  }
  steps.push(
    ...normProject(ctx, acts, rows, model.finalNorm, c.rmsNormEps, [
      [model.lmHead, acts.logits, undefined],
    ]),
  );
  return steps;
}

/**
 * Decode (m = 1) with `ctx.kernels.fusion === "fused"`: the GEMVs of one input fuse with the step
 * before them (`fusedGemv.ts`) when their weights are single bindings without biases.
 */
/** StreamingLLM's re-rotation of a layer's sink keys for the step's token (`kvRerotate`). */
function rerotateOp(
  ctx: GpuContext,
  kv: KvCacheLayer,
  source: TokenSource,
  invFreq: GPUBuffer,
): GpuOp {
  return kvRerotate(ctx, {
    cache: kv,
    state: kv.rerotate!,
    positions: source.positions,
    positionsOffset: source.positionsOffset,
    invFreq,
  });
}

function fusible(ctx: GpuContext, m: number, ws: GpuMatrix[]): boolean {
  return m === 1 && ctx.kernels.fusion === "fused" && canFuseGemv(ws);
}

/** `acts.xn = rmsnorm(acts.x)` then `y = acts.xn·Wᵀ (+ b)` for each projection, fused if possible. */
function normProject(
  ctx: GpuContext,
  acts: Activations,
  m: number,
  norm: GpuVector,
  eps: number,
  outs: Array<[GpuMatrix, GPUBuffer, GpuVector | undefined]>,
): GpuOp[] {
  if (fusible(ctx, m, outs.map((o) => o[0])) && outs.every((o) => !o[2])) {
    return [fusedGemv(ctx, {
      x: acts.x,
      input: { kind: "norm", weight: norm, eps },
      outputs: outs.map(([w, y]) => ({ w, y })),
    })];
  }
  return [
    rmsNorm(ctx, { x: acts.x, weight: norm, out: acts.xn, m, eps }),
    ...outs.map(([w, y, bias]) => matmul(ctx, { x: acts.xn, w, y, m, bias })),
  ];
}

/** Records steps into `encoder`, opening compute passes around copies. */
export function encodeSteps(encoder: GPUCommandEncoder, steps: Step[]): void {
  let pass: GPUComputePassEncoder | null = null;
  for (const s of steps) {
    if ("copy" in s) {
      pass?.end();
      pass = null;
      encoder.copyBufferToBuffer(...s.copy);
    } else {
      pass ??= encoder.beginComputePass();
      s.encode(pass);
    }
  }
  pass?.end();
}

/** Frees the steps' parameter buffers. */
export function destroySteps(steps: Step[]): void {
  for (const s of steps) if (!("copy" in s)) s.destroy();
}
