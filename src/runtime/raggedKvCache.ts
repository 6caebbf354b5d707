/**
 * The model's ragged KV cache: one {@link KvCacheLayer} per layer, every (layer, KV head) with its
 * own length and capacity. Compaction allocates a smaller layer, gathers the kept entries into it
 * on the GPU and frees the old one, so the memory a policy saves is really returned; the byte
 * accounting reads the allocation itself. {@link RaggedKvCache.quantize} turns a layer into a
 * KIVI-quantised one (packed codes + a full-precision residual ring, `quantKvCache.ts`).
 *
 * @module
 */

import { type GpuContext, STORAGE_USAGE } from "../gpu/device.ts";
import { kvCompact, uploadKvSelection } from "../gpu/kernels/kvCompact.ts";
import {
  type CompensationRows,
  encodeCompensation,
  kvCompensate,
} from "../gpu/kernels/kvCompensate.ts";
import {
  createKvCacheLayer,
  kvCacheBytes,
  type KvCacheLayer,
  type KvDType,
  kvRowBytes,
  releaseKvCacheLayer,
  type RowBias,
} from "../gpu/kvCache.ts";
import type { BufferRef } from "../gpu/device.ts";
import { type GpuOp, runOps } from "../gpu/op.ts";
import { quantConvert } from "../gpu/kernels/quantConvert.ts";
import { createFoldState, type FoldMode } from "../gpu/kernels/kvFold.ts";
import {
  type CacheLayer,
  createQuantKvLayer,
  isQuantLayer,
  quantHeadAllocated,
  type QuantLayerSpec,
  releaseQuantKvLayer,
} from "../gpu/quantKvCache.ts";
import type { ModelConfig } from "../model/types.ts";

/** Lengths and bytes of one layer's heads. */
export interface LayerAccounting {
  /** Entries held per KV head. */
  lengths: number[];
  /** Rows allocated per KV head. */
  capacities: number[];
  /** Bytes allocated per KV head (K and V). */
  bytes: number[];
}

/**
 * Per-token work a press needs after each layer's attention once the cache is compressed (H2O's
 * accumulate-and-evict): the forward pass records `op(…)` right after the attention of every
 * one-token step. The hook owns its GPU state; {@link RaggedKvCache.release} releases it.
 */
export interface StepHook {
  /**
   * The op for `layer` (undefined: nothing to do there), given the layer's cache, the step's
   * query buffer (`[H·D]` after RoPE) and where the new token's position lies.
   */
  op(
    layer: number,
    cache: KvCacheLayer,
    q: BufferRef,
    positions: BufferRef,
    positionsOffset: number,
    rows: number,
  ): GpuOp | undefined;
  /** Whether the op also takes passes of several rows (else one-token steps only). */
  multiRow?: boolean;
  /** The hook's GPU state (what a cache snapshot must copy besides the layers). */
  buffers(): GPUBuffer[];
  /** Frees the hook's buffers. */
  release(): void;
}

/** The compensation token of {@link RaggedKvCache.compact}: per head, rows to average. */
export interface CompactCompensation {
  /** Per KV head: dropped source indices and the destination row, or undefined for none. */
  rows: (CompensationRows | undefined)[];
  /** Per KV head: the logit bias of that row (see `kvCache.ts`). */
  bias: (RowBias | undefined)[];
  /**
   * Per KV head: whether the token follows the window while decoding (`kvFold`), and how its
   * bias then counts (undefined: the token stays as built).
   */
  fold?: FoldMode[];
}

/** A ragged cache for every layer of a model. */
export class RaggedKvCache {
  /** Per-layer caches (replaced on compaction or quantisation: build ops afterwards). */
  readonly layers: CacheLayer[];
  /** Element type of the stored keys/values. */
  readonly dtype: KvDType;
  /**
   * Set by a press that works at every step (H2O): one-token forward passes over this cache
   * must record it (the engine's decode loop does; multi-token chunks refuse).
   */
  stepHook?: StepHook;

  /** Set when a sliding layer became a ring of its window (`slidingLayers.ts`). */
  hasSlidingRing = false;

  /**
   * Per layer, the position of row 0: what a sliding layer dropped from its front while rolling
   * through prefill or when cut to its window (`slidingLayers.ts`); 0 for every other layer.
   */
  readonly slidingOffset: number[];

  /**
   * Whether tokens appended to this cache must go one per decoding step: a step hook (H2O's
   * per-step eviction), a KIVI-quantized layer, which only the decode path extends, or a sliding
   * layer's ring, whose entries a chunk's later rows would overwrite before its earlier queries.
   */
  get takesOneTokenPerStep(): boolean {
    return this.stepHook !== undefined || this.layers.some(isQuantLayer) || this.hasSlidingRing;
  }

  /** The most K/V bytes allocated at once so far (see `KvReport.peakBytes`). */
  peakBytes = 0;

  /**
   * Allocates `capacity` rows for every (layer, KV head). With `passRows`, a sliding layer of
   * window W gets at most W + `passRows` rows and rolls through longer prefills
   * (`rollSlidingLayers`): `passRows` must cover the rows of the widest forward pass
   * (`widestPass`); what is appended later makes room by rolling (the first decoding step) or sets
   * the window aside (KVzip's repeats).
   */
  constructor(
    private ctx: GpuContext,
    private config: ModelConfig,
    capacity: number,
    dtype: KvDType = "f32",
    passRows?: number,
  ) {
    this.dtype = dtype;
    this.layers = [];
    const windows = config.gemma3?.layerWindows ?? [];
    this.slidingOffset = Array(config.numLayers).fill(0);
    try {
      for (let l = 0; l < config.numLayers; l++) {
        const w = windows[l];
        this.layers.push(createKvCacheLayer(ctx, {
          numKvHeads: config.numKvHeads,
          headDim: config.headDim,
          capacity: w && passRows !== undefined ? Math.min(capacity, w + passRows) : capacity,
          dtype,
          label: `kv layer ${l}`,
        }));
      }
    } catch (e) {
      this.release();
      throw e;
    }
    this.peakBytes = this.allocatedBytes();
  }

  /** Notes `extra` K/V bytes allocated beside the current layers (a layer being rebuilt). */
  notePeak(extra: number): void {
    this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes() + extra);
  }

  /** Per layer, the model's own sliding window (Gemma 3's sliding layers), or null. */
  get layerWindows(): readonly (number | null)[] {
    return this.config.gemma3?.layerWindows ?? this.layers.map(() => null);
  }

  /** Bytes of one cached row (one entry of one head, K or V). */
  get rowBytes(): number {
    return kvRowBytes(this.config.headDim, this.dtype);
  }

  /** Bytes allocated for K and V over all layers and heads. */
  allocatedBytes(): number {
    return this.layers.reduce(
      (s, _, l) => s + this.layerAllocated(l).reduce((a, b) => a + b, 0),
      0,
    );
  }

  /** Bytes allocated per KV head of one layer (K and V; packed codes, pairs and residual). */
  layerAllocated(layer: number): number[] {
    const c = this.layers[layer];
    if (isQuantLayer(c)) return c.capacities.map((_, h) => quantHeadAllocated(c, h).total);
    return c.capacities.map((rows) => 2 * rows * this.rowBytes);
  }

  /** Reads every layer's per-head lengths in one readback. */
  async lengths(): Promise<number[][]> {
    const H = this.config.numKvHeads;
    const staging = this.ctx.createBuffer(
      this.layers.length * 4 * H * 4,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      "kv lengths",
    );
    try {
      const encoder = this.ctx.device.createCommandEncoder();
      this.layers.forEach((layer, l) =>
        encoder.copyBufferToBuffer(layer.meta, 0, staging, l * 16 * H, 16 * H)
      );
      this.ctx.device.queue.submit([encoder.finish()]);
      const all = await this.ctx.readU32(staging);
      return this.layers.map((_, l) => Array.from(all.subarray(l * 4 * H + H, l * 4 * H + 2 * H)));
    } finally {
      this.ctx.release(staging);
    }
  }

  /** Per-layer accounting, from lengths read with {@link lengths}. */
  accounting(lengths: number[][]): LayerAccounting[] {
    return this.layers.map((layer, l) => ({
      lengths: lengths[l],
      capacities: isQuantLayer(layer) ? [...layer.capacities] : [...layer.capacities],
      bytes: this.layerAllocated(l),
    }));
  }

  /**
   * Keeps, for every KV head of `layer`, the entries at the given indices (into the head's
   * current entries, ascending) and leaves room for `extra` more per head (one number for all, or
   * one per head); heads with a `ringStart` then stay bounded, overwriting their oldest entry at
   * or after that row. With `compensation`, each listed head's destination row (a placeholder in
   * `keep`) is then overwritten with the mean key and value of its dropped source entries
   * (RazorAttention), and gets the given logit bias. The old allocation is freed.
   */
  compact(
    layer: number,
    keep: number[][],
    extra: number | number[],
    ringStart?: (number | undefined)[],
    compensation?: CompactCompensation,
  ): void {
    const src = this.plainLayer(layer, "compact");
    const dst = createKvCacheLayer(this.ctx, {
      numKvHeads: src.numKvHeads,
      headDim: src.headDim,
      capacity: keep.map((k, h) => k.length + (typeof extra === "number" ? extra : extra[h])),
      dtype: this.dtype,
      ringStart,
      bias: compensation?.bias,
      label: `kv layer ${layer}`,
    });
    this.notePeak(kvCacheBytes(dst));
    const selection = uploadKvSelection(this.ctx, keep);
    const ops = [kvCompact(this.ctx, {
      src,
      dst,
      selection,
      maxCount: Math.max(1, ...keep.map((k) => k.length)),
    })];
    const list = compensation && this.ctx.upload(encodeCompensation(compensation.rows));
    if (list) ops.push(kvCompensate(this.ctx, { src, dst, list }));
    runOps(this.ctx, ops);
    for (const op of ops) op.destroy();
    this.ctx.release(selection);
    if (list) this.ctx.release(list);
    releaseKvCacheLayer(this.ctx, src);
    if (compensation?.fold?.some((f) => f)) {
      dst.fold = createFoldState(
        this.ctx,
        dst.headDim,
        compensation.rows.map((r, h) => ({
          count: r?.dropped.length ?? 0,
          weight: r?.dropped.length ? compensation.fold![h] : undefined,
        })),
        `kv layer ${layer} fold`,
      );
    }
    this.layers[layer] = dst;
  }

  /**
   * Re-indexes positions (StreamingLLM's `pos_shift`, see `kvRerotate.ts`) for the heads of
   * `layer` with `sinks[h]` > 0: their first `sinks[h]` rows are copied as they are now (after
   * compaction) and rotated by every later step.
   */
  enableRerotate(layer: number, sinks: number[]): void {
    const c = this.plainLayer(layer, "re-index");
    const maxSinks = Math.max(1, ...sinks), row = kvRowBytes(c.headDim, c.dtype);
    const copies = this.ctx.createBuffer(
      c.numKvHeads * maxSinks * row,
      STORAGE_USAGE | GPUBufferUsage.COPY_DST,
      `kv layer ${layer} sinks`,
    );
    const encoder = this.ctx.device.createCommandEncoder();
    sinks.forEach((n, h) => {
      if (n > 0) {
        encoder.copyBufferToBuffer(c.k, c.bases[h] * row, copies, h * maxSinks * row, n * row);
      }
    });
    this.ctx.device.queue.submit([encoder.finish()]);
    c.rerotate = { sinks: copies, counts: this.ctx.upload(Uint32Array.from(sinks)), maxSinks };
  }

  /** Reads the first `count` keys of one KV head of one layer (f32, `count × headDim`). */
  readKeys(layer: number, kvHead: number, count: number): Promise<Float32Array> {
    return this.#readRows("k", layer, kvHead, count);
  }

  /**
   * Drops every head's entries at positions `next` and after, in a plain layer whose heads all hold
   * their entries in position order from `slidingOffset` on (KVzip's reconstruction passes
   * appended after the context); the allocation stays.
   */
  truncate(layer: number, next: number): void {
    const c = this.plainLayer(layer, "truncate");
    const length = next - this.slidingOffset[layer];
    this.ctx.write(c.meta, c.numKvHeads * 4, new Uint32Array(c.numKvHeads).fill(length));
  }

  /**
   * Fills this cache, fresh from the constructor, with the entries at positions below `n` of
   * every head of `src` (a plain cache of the same model and dtype whose heads hold them in order:
   * a prompt prefilled once for several policies, `sharedPrefill.ts`; a sliding layer that rolled
   * holds them from its `slidingOffset` on): the rows are copied on the GPU, then every head's
   * length is set.
   */
  copyPrefixFrom(src: RaggedKvCache, n: number): void {
    if (src.dtype !== this.dtype || src.layers.length !== this.layers.length) {
      throw new Error("cache copy: the caches differ in dtype or layer count");
    }
    const encoder = this.ctx.device.createCommandEncoder();
    // A sliding layer takes its last rows when this cache has less room (it rolls on from there).
    const rows = this.layers.map((layer, l) =>
      this.layerWindows[l] === null
        ? n - src.slidingOffset[l]
        : Math.min(n - src.slidingOffset[l], ...layer.capacities)
    );
    this.layers.forEach((_, l) => {
      const from = src.plainLayer(l, "copy from");
      const to = this.plainLayer(l, "copy into");
      if (to.fold || to.rerotate || from.fold || from.rerotate) {
        throw new Error(`cache copy: layer ${l} carries decoding state`);
      }
      const row = kvRowBytes(to.headDim, to.dtype), count = rows[l];
      for (let h = 0; h < to.numKvHeads; h++) {
        if (count < 0 || count > to.capacities[h] || count > from.capacities[h]) {
          throw new Error(`cache copy: ${count} rows do not fit head ${h} of layer ${l}`);
        }
        if (count === 0) continue;
        const skipped = n - src.slidingOffset[l] - count; // > 0 only for a sliding layer
        const [f, t] = [(from.bases[h] + skipped) * row, to.bases[h] * row];
        encoder.copyBufferToBuffer(from.k, f, to.k, t, count * row);
        encoder.copyBufferToBuffer(from.v, f, to.v, t, count * row);
      }
    });
    this.ctx.device.queue.submit([encoder.finish()]);
    (this.layers as KvCacheLayer[]).forEach((layer, l) => {
      const H = layer.numKvHeads;
      this.ctx.write(layer.meta, H * 4, new Uint32Array(H).fill(rows[l]));
      this.slidingOffset[l] = n - rows[l];
    });
  }

  /** The first `count` values of a plain (not quantised) KV head, as f32 (`count × headDim`). */
  readValues(layer: number, kvHead: number, count: number): Promise<Float32Array> {
    return this.#readRows("v", layer, kvHead, count);
  }

  /** The first `count` rows of a plain layer's keys (`k`) or values (`v`) of one head, as f32. */
  async #readRows(which: "k" | "v", layer: number, kvHead: number, count: number) {
    const c = this.plainLayer(layer, which === "k" ? "read keys of" : "read values of");
    const D = c.headDim;
    const bytesPer = this.dtype === "f32" ? 4 : 2;
    const raw = await this.ctx.read(c[which], c.bases[kvHead] * D * bytesPer, count * D * bytesPer);
    return this.dtype === "f32" ? new Float32Array(raw) : Float32Array.from(new Float16Array(raw));
  }

  /**
   * Quantises `layer` (KIVI, see `quantKvCache.ts`): per KV head, its current entries are packed
   * as KIVI's prefill leaves them (keys but the last T mod R, values but the last R), on the GPU,
   * into a new allocation sized
   * for `maxEntries[h]` entries (what it holds now + its decode budget); the old one is freed.
   * Heads whose residual is null stay full precision in the same layer.
   */
  quantize(layer: number, quant: QuantLayerSpec, maxEntries: number[]): void {
    const src = this.plainLayer(layer, "quantise");
    const dst = createQuantKvLayer(this.ctx, {
      headDim: src.headDim,
      dtype: this.dtype,
      quant,
      maxEntries,
      label: `kv layer ${layer}`,
    });
    this.notePeak(dst.capacities.reduce((sum, _, h) => sum + quantHeadAllocated(dst, h).total, 0));
    const op = quantConvert(this.ctx, { src, dst });
    runOps(this.ctx, [op]);
    op.destroy();
    releaseKvCacheLayer(this.ctx, src);
    this.layers[layer] = dst;
  }

  private plainLayer(layer: number, what: string): KvCacheLayer {
    const c = this.layers[layer];
    if (isQuantLayer(c)) throw new Error(`cannot ${what} layer ${layer}: it is quantised`);
    return c;
  }

  /**
   * Every buffer whose contents make up the cache's state: keys, values, per-head fields, the
   * quantised rings and codes, fold and rerotate state, and the step hook's (see
   * `cacheSnapshot.ts`). The list changes when a layer is compacted or quantised.
   */
  stateBuffers(): GPUBuffer[] {
    const out: GPUBuffer[] = [];
    for (const layer of this.layers) {
      if (isQuantLayer(layer)) {
        out.push(layer.rk, layer.rv, layer.codes, layer.params, layer.meta);
      } else {
        out.push(layer.k, layer.v, layer.meta);
        if (layer.fold) out.push(layer.fold);
        if (layer.rerotate) out.push(layer.rerotate.sinks, layer.rerotate.counts);
      }
    }
    return out.concat(this.stepHook?.buffers() ?? []);
  }

  /** Frees every layer (and the step hook's state). */
  release(): void {
    this.stepHook?.release();
    this.stepHook = undefined;
    for (const layer of this.layers) {
      if (isQuantLayer(layer)) releaseQuantKvLayer(this.ctx, layer);
      else releaseKvCacheLayer(this.ctx, layer);
    }
    this.layers.length = 0;
  }
}
