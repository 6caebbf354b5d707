/**
 * RazorAttention's `compensate` on the real cache: the entries a head's select press dropped
 * collapse into one extra cache row holding their mean key and mean value (computed on the GPU
 * by `kvCompensate` during compaction), with a logit bias of ln N_d (`weight=count`) or 0
 * (`weight=plain`) stored in the cache meta and added by the attention kernels — the GPU
 * counterpart of `compensationToken` (src/plugins/compensatePress.ts).
 *
 * Placement: a bounded head (window) gets the token right after its sink rows, and its ring
 * starts one row later, so the ring never overwrites it (an extra sink); other heads get it after
 * their kept entries (the row's place does not matter to attention: keys are already rotated).
 *
 * @module
 */

import type { CompensationRows } from "../gpu/kernels/kvCompensate.ts";
import type { RowBias } from "../gpu/kvCache.ts";

/** One head's plan with its compensation token. */
export interface CompensatedHead {
  /** Indices to compact, the token's placeholder included (its source row is overwritten). */
  keep: number[];
  /** Ring start, moved past the token for a bounded head. */
  ringStart: number | undefined;
  /** What `kvCompensate` averages and where it writes. */
  rows: CompensationRows;
  /** The token's logit bias. */
  bias: RowBias;
}

/**
 * Adds the compensation token to a head that keeps `kept` (sorted indices) of its `cached`
 * entries; `ringStart` is the bounded press's first evictable row (undefined: not bounded).
 * Returns undefined when nothing was dropped (no token, as `compensationToken` returns null).
 */
export function compensateHead(
  kept: number[],
  cached: number,
  ringStart: number | undefined,
  weight: "count" | "plain",
): CompensatedHead | undefined {
  const isKept = new Uint8Array(cached);
  for (const i of kept) isKept[i] = 1;
  const dropped: number[] = [];
  for (let i = 0; i < cached; i++) if (!isKept[i]) dropped.push(i);
  if (dropped.length === 0) return undefined;
  const row = ringStart === undefined ? kept.length : Math.min(ringStart, kept.length);
  const keep = [...kept.slice(0, row), dropped[0], ...kept.slice(row)];
  return {
    keep,
    ringStart: ringStart === undefined ? undefined : row + 1,
    rows: { dropped, row },
    bias: { row, value: weight === "count" ? Math.log(dropped.length) : 0 },
  };
}
