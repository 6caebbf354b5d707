/**
 * `decoding(every=N)` at run time (kvpress's DecodingPress, `src/plugins/decodingPress.ts`): after
 * every N decoding steps, the rule's selection press runs again over each head's whole cache —
 * the entries it kept so far and the N generated since — and brings it back to its budget.
 *
 * What the press sees is what it sees after prefill, with the cache's current entries as the
 * "prompt" (in position order: kept entries, then the generated ones): the last `window` entries
 * are the last generated tokens, whose queries the forward pass copied into a ring
 * (`captureQuery`, a step hook), and their attention over the entries before them is computed
 * here in float64 from those queries and the keys read back; budgets are resolved against the
 * original prompt length, so a head returns to the size it had after prefill. Every head of a
 * layer that recompresses must be plain (no ring, H2O, compensation or quantisation): heads
 * without `decoding` in such a layer keep all their entries.
 *
 * @module
 */

import type { GpuContext } from "../gpu/device.ts";
import { type GpuOp, sequenceOp } from "../gpu/op.ts";
import { captureQuery, createQueryRing, type QueryRing } from "../gpu/kernels/captureQuery.ts";
import { isQuantLayer } from "../gpu/quantKvCache.ts";
import type { ModelConfig } from "../model/types.ts";
import { attentionScale } from "../model/attentionScale.ts";
import type { PlanPress } from "../plan/plan.ts";
import { resolveBudget } from "../plugins/budget.ts";
import type { LayerScoresInput } from "../plugins/press.ts";
import type { Budget, ParamValue, PressSchema } from "../plugins/schema.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import type { HeadAssignment } from "./planResolver.ts";
import type { RaggedKvCache, StepHook } from "./raggedKvCache.ts";
import { trimSlidingLayer } from "./slidingLayers.ts";

/** One head that recompresses: its press, and the positions of its entries in cache order. */
export interface RecompressHead {
  /** The selection press and its schema. */
  press: PlanPress;
  /** Its schema. */
  schema: PressSchema;
  /** Positions of the head's entries, in cache order (ascending). */
  positions: number[];
}

/** The observation window a head's press reads when it recompresses (0: none). */
export function recompressWindow(r: { press: PlanPress; schema: PressSchema }): number {
  return r.schema.needs?.observationWindow?.(r.press.params) ?? 0;
}

/** The recompression of one policy: its interval, per-layer heads and query rings. */
export class DecodingRecompressor {
  /** N: decoding steps between recompressions. */
  readonly every: number;
  private rings: (QueryRing | undefined)[];
  /** Recompressions run so far. */
  runs = 0;
  /** Position of the first entry appended since the last compression. */
  private appendedFrom: number;

  /**
   * `heads[l][h]`: the head's recompression, or undefined. `promptLength` resolves the budgets;
   * `every` is N; `cachedLength` is the position the first decoding step feeds.
   */
  constructor(
    private ctx: GpuContext,
    private config: ModelConfig,
    private heads: (RecompressHead | undefined)[][],
    private promptLength: number,
    every: number,
    cachedLength: number,
  ) {
    this.every = every;
    this.appendedFrom = cachedLength;
    const width = config.numHeads * config.headDim;
    this.rings = heads.map((row) => {
      const w = Math.max(0, ...row.map((r) => (r ? this.window(r) : 0)));
      return w > 0 ? createQueryRing(ctx, w, width) : undefined;
    });
  }

  /** Rows of the press's observation window (the executor checks it is at most N). */
  private window(r: RecompressHead): number {
    return recompressWindow(r);
  }

  /** Per layer and KV head, the positions a recompressed head holds (undefined: not listed). */
  keptPositions(): (number[] | undefined)[][] {
    return this.heads.map((row) => row.map((r) => r?.positions.slice()));
  }

  /** The step hook that fills the query rings (record it after each decoding step's attention). */
  stepHook(): StepHook {
    const c = this.config;
    return {
      op: (l, _layer, q, positions, positionsOffset, rows) => {
        const ring = this.rings[l];
        if (!ring) return undefined;
        return captureQuery(this.ctx, {
          q,
          width: c.numHeads * c.headDim,
          positions,
          positionsOffset,
          ring,
          m: rows,
        });
      },
      multiRow: true,
      buffers: () => this.rings.flatMap((r) => (r ? [r.queries, r.positions] : [])),
      release: () => {
        for (const r of this.rings) {
          if (r) {
            this.ctx.release(r.queries);
            this.ctx.release(r.positions);
          }
        }
        this.rings = [];
      },
    };
  }

  /**
   * Recompresses every listed head of `cache` once `next` is the position of the next token to be
   * fed, leaving room for `remaining` more decoding steps (never more than N).
   */
  run(cache: RaggedKvCache, next: number, remaining: number): Promise<void> {
    return this.compress(cache, next, Math.min(this.every, remaining), null);
  }

  /**
   * Chunked prefill (`chunked`): compresses every listed head after the chunk ending before
   * position `next`, and gives every head — listed or not, in every layer — room for `room` more
   * entries (the next chunk, or the decoding budget after the last one).
   */
  runChunk(cache: RaggedKvCache, next: number, room: number): Promise<void> {
    return this.compress(cache, next, room, room);
  }

  /**
   * Selects over the listed heads and compacts: listed heads get `room` rows more; the others
   * keep every entry with `others` rows more (every layer is rebuilt), or, when `others` is null,
   * keep their allocation (only layers with listed heads are rebuilt).
   */
  private async compress(
    cache: RaggedKvCache,
    next: number,
    room: number,
    others: number | null,
  ): Promise<void> {
    const c = this.config;
    const lengths = await cache.lengths();
    for (const [l, row] of this.heads.entries()) {
      const listed = row.flatMap((r, h) => (r ? [h] : []));
      const layer = cache.layers[l];
      const all = (h: number) => Array.from({ length: lengths[l][h] }, (_, i) => i);
      if (listed.length === 0) {
        // A sliding layer (Gemma 3's) keeps only what later chunks can see: its last W.
        if (others !== null && cache.layerWindows[l] !== null) {
          trimSlidingLayer(cache, l, next, others);
        } else if (others !== null) cache.compact(l, row.map((_, h) => all(h)), others);
        continue;
      }
      if (isQuantLayer(layer) || layer.fold || layer.rerotate) {
        throw new Error(`recompress layer ${l}: the layer is not a plain cache`);
      }
      const n = lengths[l][listed[0]];
      for (const h of listed) {
        const r = row[h]!;
        // Entries fed since the last run follow the kept ones, one position each.
        for (let p = this.appendedFrom; p < next; p++) r.positions.push(p);
        if (r.positions.length !== lengths[l][h] || lengths[l][h] !== n) {
          throw new Error(
            `recompress layer ${l} head ${h}: ${
              lengths[l][h]
            } entries, ${r.positions.length} known`,
          );
        }
      }
      const input = await this.input(cache, l, listed, n);
      const selections = new Map<string, number[][]>();
      const keep: number[][] = [];
      const extra: number[] = [];
      for (let h = 0; h < c.numKvHeads; h++) {
        const r = row[h];
        if (!r) {
          keep.push(all(h));
          extra.push(others ?? Math.max(0, layer.capacities[h] - lengths[l][h])); // its own room
          continue;
        }
        const key = r.press.name + JSON.stringify(r.press.params);
        if (!selections.has(key)) {
          selections.set(key, r.schema.select!(input, this.absoluteBudgets(r)));
        }
        const kept = selections.get(key)![h];
        keep.push(kept);
        extra.push(room);
        r.positions = kept.map((i) => r.positions[i]);
      }
      cache.compact(l, keep, extra);
    }
    this.appendedFrom = next;
    this.runs++;
  }

  /** The press's parameters with every budget resolved against the prompt length. */
  private absoluteBudgets(r: RecompressHead): Record<string, ParamValue> {
    const out: Record<string, ParamValue> = { ...r.press.params };
    for (const spec of r.schema.params) {
      const v = out[spec.name];
      if (spec.type.kind === "budget" && v !== null && typeof v === "object") {
        out[spec.name] = { tokens: resolveBudget(v as Budget, this.promptLength) };
      }
    }
    return out;
  }

  /**
   * What the presses of layer `l` see: the `n` current entries of the `listed` heads (every other
   * head reads as zeros, and its selection is not used).
   */
  private async input(
    cache: RaggedKvCache,
    l: number,
    listed: number[],
    n: number,
  ): Promise<LayerScoresInput> {
    const c = this.config;
    const D = c.headDim, g = c.numHeads / c.numKvHeads, scale = attentionScale(c);
    const keys = new Map<number, Float32Array>();
    for (const h of listed) keys.set(h, await cache.readKeys(l, h, n));
    const w = Math.min(n, Math.max(...listed.map((h) => this.window(this.heads[l][h]!))));
    const rows = Array.from({ length: c.numHeads }, () => new Float32Array(w * n));
    if (w > 0) {
      const ring = this.rings[l]!;
      const slotPos = await this.ctx.readU32(ring.positions, 0, ring.slots);
      const queries = await this.ctx.readF32(ring.queries, 0, ring.slots * c.numHeads * D);
      for (const h of listed) {
        // The window's queries: the last w entries' own, each in its ring slot.
        const wanted = this.heads[l][h]!.positions.slice(n - w);
        const k = keys.get(h)!;
        wanted.forEach((p, j) => {
          const slot = p % ring.slots;
          if (slotPos[slot] !== p) throw new Error(`query of position ${p} is not in the ring`);
          const visible = n - w + j + 1; // causal: entries up to the query's own
          for (let qh = h * g; qh < (h + 1) * g; qh++) {
            const q0 = (slot * c.numHeads + qh) * D;
            const logits = new Float64Array(visible);
            let max = -Infinity;
            for (let i = 0; i < visible; i++) {
              let dot = 0;
              for (let d = 0; d < D; d++) dot += queries[q0 + d] * k[i * D + d];
              logits[i] = dot * scale;
              if (logits[i] > max) max = logits[i];
            }
            let sum = 0;
            for (let i = 0; i < visible; i++) sum += logits[i] = Math.exp(logits[i] - max);
            for (let i = 0; i < visible; i++) rows[qh][j * n + i] = logits[i] / sum;
          }
        });
      }
    }
    return {
      layer: l,
      numLayers: c.numLayers,
      promptLength: n,
      numKvHeads: c.numKvHeads,
      groupSize: g,
      headDim: D,
      windowAttention: (window) => {
        if (window > w) throw new Error(`observation window ${window} was not captured`);
        return rows.map((m) => m.subarray((w - window) * n));
      },
      attentionColumnSums: () => {
        throw new Error("decoding(every=...) has no attention column sums (H2O bounds itself)");
      },
      keys: (kvHead) => keys.get(kvHead) ?? new Float32Array(n * D),
    };
  }
}

/**
 * The recompression a compressed cache needs, or undefined when no head has `decoding(every=N)`.
 * `kept[l][h]` are the positions the head holds after prefill (undefined: not recompressed).
 * Throws {@link UnsupportedPolicyError} for what is not supported: different N in one policy, a
 * window longer than N, or a recompressed head sharing its layer with a bounded, compensated or
 * quantised head.
 */
export function recompressorFor(
  ctx: GpuContext,
  config: ModelConfig,
  assignments: HeadAssignment[][],
  kept: (number[] | undefined)[][],
  schemaOf: (p: PlanPress) => PressSchema,
  promptLength: number,
  cachedLength: number,
): DecodingRecompressor | undefined {
  const everies = new Set<number>();
  const heads = assignments.map((row, l) =>
    row.map((a, h) => {
      const decoding = a.pipeline.find((p) => p.name === "decoding");
      if (!decoding || decoding.params.every === null || !kept[l][h]) return undefined;
      const every = decoding.params.every as number;
      everies.add(every);
      const press = a.pipeline[0];
      const r: RecompressHead = { press, schema: schemaOf(press), positions: kept[l][h]! };
      const window = recompressWindow(r);
      if (window > every) {
        throw new UnsupportedPolicyError(
          `decoding(every=${every}) re-applies '${press.name}', which reads the last ${window} ` +
            `tokens' queries: every must be at least ${window}`,
        );
      }
      return r;
    })
  );
  if (everies.size === 0) return undefined;
  if (everies.size > 1) {
    throw new UnsupportedPolicyError(
      `decoding(every=...) must use one interval per policy (got ${[...everies].join(", ")})`,
    );
  }
  heads.forEach((row, l) => {
    if (!row.some((r) => r)) return;
    for (const a of assignments[l]) {
      const other = a.pipeline.find((p) =>
        (p.name !== "decoding" && schemaOf(p).when === "bounded") || p.name === "compensate" ||
        (p.name === "decoding" && p.params.every === null)
      );
      if (other) {
        throw new UnsupportedPolicyError(
          `layer ${l}: decoding(every=...) cannot share a layer with '${other.name}' yet ` +
            "(recompression rebuilds the layer's cache)",
        );
      }
    }
  });
  return new DecodingRecompressor(
    ctx,
    config,
    heads,
    promptLength,
    [...everies][0],
    cachedLength,
  );
}

/** One step hook running `a`'s op then `b`'s (either may be absent). */
export function bothHooks(a: StepHook | undefined, b: StepHook | undefined): StepHook | undefined {
  if (!a || !b) return a ?? b;
  return {
    op: (l, layer, q, positions, offset, rows) => {
      const ops = [
        a.op(l, layer, q, positions, offset, rows),
        b.op(l, layer, q, positions, offset, rows),
      ].filter((o): o is GpuOp => o !== undefined);
      return ops.length > 1 ? sequenceOp("stepHooks", ops) : ops[0];
    },
    multiRow: a.multiRow && b.multiRow,
    buffers: () => [...a.buffers(), ...b.buffers()],
    release: () => {
      a.release();
      b.release();
    },
  };
}

/**
 * The recompressor of a chunked policy (`chunked(size=C)`): every head whose pipeline has
 * `chunked` is listed with no entries yet (prefill fills it chunk by chunk), every other head
 * keeps everything. The executor has refused presses reading more queries than a chunk holds.
 */
export function chunkedRecompressor(
  ctx: GpuContext,
  config: ModelConfig,
  assignments: HeadAssignment[][],
  schemaOf: (p: PlanPress) => PressSchema,
  promptLength: number,
): DecodingRecompressor {
  let size = 0;
  const heads = assignments.map((row) =>
    row.map((a) => {
      const chunked = a.pipeline.find((p) => p.name === "chunked");
      if (!chunked) return undefined;
      size = chunked.params.size as number;
      const press = a.pipeline[0];
      return { press, schema: schemaOf(press), positions: [] } satisfies RecompressHead;
    })
  );
  return new DecodingRecompressor(ctx, config, heads, promptLength, size, 0);
}
