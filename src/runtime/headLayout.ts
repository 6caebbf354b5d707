/**
 * One KV head's place in the compacted cache after prefill: the positions its select press keeps
 * (SnapKV-style presses, H2O, a bounded window), the rows decoding may still add, where its ring
 * starts (StreamingLLM's rolling window, `decoding(recent=N)`), and RazorAttention's compensation
 * token when the pipeline has `compensate`. {@link LayerLayout} computes it for each head of one
 * layer; presses score every head of a layer at once, so heads sharing a press and its
 * parameters share one selection.
 *
 * @module
 */

import type { PlanPress } from "../plan/plan.ts";
import { type H2oHeadState, type H2oParams, h2oPrefill } from "../plugins/h2oPress.ts";
import { decodingMode } from "../plugins/decodingPress.ts";
import { type LayerScoresInput, rescoreSelect } from "../plugins/press.ts";
import type { PressSchema } from "../plugins/schema.ts";
import { type CompensatedHead, compensateHead } from "./compensation.ts";
import { h2oCapacity } from "./h2oRuntime.ts";
import type { HeadAssignment } from "./planResolver.ts";

/** What the cache's compaction needs of one KV head, and what the trace reports. */
export interface HeadLayout {
  /** Sorted original positions the select press kept (all of them without one). */
  kept: number[];
  /** The rows the cache keeps, in order: `kept`, plus the compensation token's row if any. */
  rows: number[];
  /** Rows beyond {@link rows} that decoding may fill. */
  extra: number;
  /** First row of the ring that evicts the oldest entry as tokens arrive; undefined: grows. */
  ring: number | undefined;
  /** Whether the head's cache changes (a compaction is needed). */
  changed: boolean;
  /** H2O's prefill state, which the decoding step hook goes on evicting from. */
  h2o?: H2oHeadState;
  /** `decoding(every=N)`: the head is selected again every N decoding steps from `kept`. */
  every: boolean;
  /** `compensate`: the compensation token and whether it follows the window (`decode=fold`). */
  token?: CompensatedHead;
  fold?: "count" | "plain";
  /** StreamingLLM's re-indexed positions: how many sink rows rotate as the window moves. */
  rerotate: number;
}

/** The prefill state a layout depends on (see `PrefillState` in `engine.ts`). */
export interface LayoutLengths {
  promptLength: number;
  /** Rows cached now: the prompt, plus a first decoding step recorded before compression. */
  cachedLength: number;
  /** Tokens decoding may still add. */
  decodeBudget: number;
}

/** The layouts of one layer's heads, from that layer's scoring input. */
export class LayerLayout {
  private selections = new Map<string, number[][]>();
  private h2oRuns = new Map<string, H2oHeadState[]>();

  /** `all`: every cached position, shared by the heads that keep everything. */
  constructor(
    private input: LayerScoresInput,
    private lengths: LayoutLengths,
    private press: (p: PlanPress) => PressSchema,
    private all: number[],
  ) {}

  /** Head `h`'s layout under its assignment `a`. */
  head(h: number, a: HeadAssignment): HeadLayout {
    const { promptLength, cachedLength, decodeBudget } = this.lengths;
    const select = a.pipeline.find((p) =>
      this.press(p).role === "select" && (this.press(p).select || p.name === "h2o")
    );
    const schema = select && this.press(select);
    let kept: number[];
    let extra = decodeBudget;
    let ring: number | undefined;
    let changed = false;
    let h2o: H2oHeadState | undefined;
    if (select?.name === "h2o") {
      // H2O: prefill selection now, then evicting at every decoding step on the GPU.
      const s = this.memo(this.h2oRuns, JSON.stringify(select.params), () =>
        h2oPrefill(this.input, select.params as unknown as H2oParams))[h];
      h2o = { ...s, positions: s.positions.slice(), scores: s.scores.slice() };
      kept = s.positions.slice();
      extra = h2oCapacity(s, decodeBudget) - kept.length;
      changed = true;
    } else if (schema?.bound) {
      // Bounded presses select over everything cached so far and then stay at capacity; the
      // same press unbounded (window(decode=grow), SimLayerKV) cuts once and then grows.
      kept = this.memo(
        this.selections,
        JSON.stringify(select!.params) + schema.name + ":all",
        () => schema.select!({ ...this.input, promptLength: cachedLength }, select!.params),
      )[h];
      const bounds = schema.bound(select!.params, promptLength);
      // room for what decoding can add, never more than the tokens still to come
      const room = bounds ? Math.max(0, bounds.capacity - kept.length) : decodeBudget;
      extra = Math.min(room, decodeBudget);
      // a ring start past the rows this head can hold never evicts: no ring
      ring = bounds && bounds.ringStart < kept.length + extra ? bounds.ringStart : undefined;
      changed = bounds !== null || kept.length < cachedLength;
    } else if (schema) {
      const rescore = a.pipeline.find((p) => this.press(p).role === "rescore");
      kept = this.memo(
        this.selections,
        JSON.stringify([select!.params, schema.name, rescore ?? null]),
        () =>
          rescore
            ? rescoreSelect(this.input, schema, select!.params, this.press(rescore), rescore.params)
            : schema.select!(this.input, select!.params),
      )[h];
      // a first decoding step cached before compression stays
      for (let p = promptLength; p < cachedLength; p++) kept = [...kept, p];
      changed = kept.length < cachedLength;
    } else {
      kept = this.all;
    }
    const decoding = a.pipeline.find((p) => p.name === "decoding");
    const mode = decoding && decodingMode(decoding.params);
    const every = mode !== undefined && "every" in mode;
    if (mode && "every" in mode) {
      // Re-applied every N decoding steps: room for N more, never more than will come.
      extra = Math.min(mode.every, extra);
      changed = true;
    } else if (mode && "recent" in mode) {
      // The prompt's entries stay; generated ones share a ring of `recent` rows after them.
      const fromPrompt = kept.filter((p) => p < promptLength).length;
      extra = Math.min(Math.max(0, mode.recent - (kept.length - fromPrompt)), extra);
      ring = fromPrompt < kept.length + extra ? fromPrompt : undefined;
      changed = true;
    }
    const comp = a.pipeline.find((p) => p.name === "compensate")?.params;
    const weight = comp?.weight as "count" | "plain" | undefined;
    const token = weight ? compensateHead(kept, cachedLength, ring, weight) : undefined;
    // A bounded head's token follows its window while decoding (`decode=fold`).
    const fold = token && token.ringStart !== undefined && comp?.decode === "fold"
      ? weight
      : undefined;
    if (token) ring = token.ringStart;
    const sinks = select?.params.rerotate === true ? select.params.sink as number : 0;
    return {
      kept,
      rows: token?.keep ?? kept,
      extra,
      ring,
      changed,
      h2o,
      every,
      token,
      fold,
      rerotate: Math.min(sinks, kept.length),
    };
  }

  private memo<T>(cache: Map<string, T>, key: string, make: () => T): T {
    if (!cache.has(key)) cache.set(key, make());
    return cache.get(key)!;
  }
}
