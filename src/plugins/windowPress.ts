/** `window`: StreamingLLM attention sinks + recent window. @module */
import { resolveBudget } from "./budget.ts";
import { allPositions, positionRange } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * StreamingLLM (Xiao et al., 2023, arXiv 2309.17453; mit-han-lab/streaming-llm): keep the first
 * `sink` entries and the last `recent` ones, evicting the oldest non-sink entry as tokens arrive.
 * Official defaults: start 4, recent 2000. Keys keep their original positions unless
 * `rerotate=true`: then positions are re-indexed inside the cache as the official code does
 * (`pos_shift`: each key at its rank in the cache, the query at the last rank; `policies/
 * streaming.kvp` sets it), which we get by re-rotating the sink keys at every step
 * (`src/gpu/kernels/kvRerotate.ts`). Default `false`: SimLayerKV's lazy layers and DuoAttention's
 * streaming heads keep original positions.
 *
 * `decode=grow` is SimLayerKV's lazy-layer cache instead (Zhang et al., 2024, arXiv 2410.13846;
 * sail-sg/SimLayerKV `SimLayerKV_attention_llama.py`, decode path): cut once to the first `sink`
 * and last `recent` entries when the layer is found lazy, then append every generated token
 * without evicting. `decode=auto` (the default) resolves when the policy is checked: `grow` on a
 * `layers lazy` rule, `roll` everywhere else.
 */
export const windowPress: PressSchema = {
  kind: "press",
  name: "window",
  role: "select",
  when: "bounded",
  params: [
    { name: "sink", type: { kind: "int", min: 0 }, default: 4, doc: "initial entries always kept" },
    {
      name: "recent",
      type: { kind: "budget" },
      default: { tokens: 2000 },
      doc: "most recent entries kept",
    },
    {
      name: "decode",
      type: { kind: "enum", values: ["roll", "grow"] },
      default: null,
      doc: "roll: evict the oldest non-sink entry per new token (StreamingLLM); grow: cut once, " +
        "then keep every new token (SimLayerKV); auto: grow on `layers lazy` rules, else roll",
    },
    {
      name: "rerotate",
      type: { kind: "bool" },
      default: false,
      doc: "re-index positions inside the cache as StreamingLLM's pos_shift does (sinks move " +
        "next to the window); false: original positions",
    },
  ],
  doc: "StreamingLLM: first `sink` entries + last `recent` entries; bounded while decoding.",
  select: (input, p) => selectWindow(input, p as unknown as WindowParams),
  bound: (p, n) =>
    p.decode === "grow" ? null : {
      capacity: windowCapacity(p as unknown as WindowParams, n),
      ringStart: p.sink as number,
    },
};

/**
 * What `decode=auto` means for a window press: `grow` (SimLayerKV) when the rule selects the
 * `lazy` detector's layers, `roll` (StreamingLLM) otherwise.
 */
export function windowDecodeMode(
  decode: string | null,
  onLazyLayers: boolean,
): "roll" | "grow" {
  if (decode === "roll" || decode === "grow") return decode;
  return onLazyLayers ? "grow" : "roll";
}

/** Parameters of {@link selectWindow}, named as in the schema. */
export interface WindowParams {
  /** Initial entries always kept. */
  sink: number;
  /** Most recent entries kept (a fraction resolves against the prompt length). */
  recent: Budget;
  /** `roll` (bounded while decoding) or `grow` (cut once); `null` until the checker resolves it. */
  decode?: "roll" | "grow" | null;
}

/**
 * The cache capacity of a `window` press for a prompt of `promptLength` tokens:
 * `sink + resolveBudget(recent, promptLength)`. Fixed at prefill; decoding keeps the cache at
 * most this large.
 */
export function windowCapacity(params: WindowParams, promptLength: number): number {
  return params.sink + resolveBudget(params.recent, promptLength);
}

/**
 * Prefill selection, identical for every KV head: positions `0 … sink − 1` and the last
 * `recent` positions; everything when sink + recent ≥ N. Query-agnostic: needs only N.
 */
export function selectWindow(
  input: { promptLength: number; numKvHeads: number },
  params: WindowParams,
): number[][] {
  const n = input.promptLength;
  const recent = resolveBudget(params.recent, n);
  const kept = params.sink + recent >= n
    ? allPositions(n)
    : positionRange(0, params.sink).concat(positionRange(n - recent, n));
  return Array.from({ length: input.numKvHeads }, () => kept.slice());
}

/**
 * Decode-time eviction of a bounded window cache. `positions` are the original positions of the
 * entries of one KV head in cache order, the newly appended token included. When there are more
 * than `capacity` (see {@link windowCapacity}), returns the cache INDEX of the entry to drop: the
 * oldest entry that is not one of the `sink` smallest positions. Otherwise returns `null`.
 * One call per appended token keeps the cache at `capacity`.
 */
export function windowEvictIndex(
  positions: ArrayLike<number>,
  sink: number,
  capacity: number,
): number | null {
  if (positions.length <= capacity) return null;
  const byPosition = allPositions(positions.length).sort((a, b) => positions[a] - positions[b]);
  return byPosition[Math.min(sink, byPosition.length - 1)];
}
