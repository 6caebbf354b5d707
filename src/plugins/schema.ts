/**
 * Parameter schemas of plugins (presses and detectors). The policy checker validates a policy
 * against these schemas only, so checking never needs a GPU, a model or plugin code beyond the
 * schema itself.
 *
 * @module
 */

import type { LayerScoresInput } from "./press.ts";

/** One budget term: an absolute number of cache entries, or a fraction of the prompt length. */
export type BudgetTerm = { tokens: number } | { fraction: number };

/**
 * A budget: a {@link BudgetTerm}, or the largest (`max(251, 10%)`) or smallest (`min(20%, 4k)`)
 * of two or more terms, each resolved against the prompt length first (see `resolveBudget`).
 */
export type Budget = BudgetTerm | { max: BudgetTerm[] } | { min: BudgetTerm[] };

/** A typed, checked parameter value as it appears in a compiled plan. */
export type ParamValue = number | string | boolean | Budget | null;

/** The type of a parameter, with its range. */
export type ParamType =
  | { kind: "int"; min?: number; max?: number; oneOf?: number[] }
  | { kind: "number"; min?: number; max?: number; exclusiveMin?: boolean }
  | { kind: "budget" }
  | { kind: "fraction" }
  | { kind: "enum"; values: string[] }
  | { kind: "bool" }
  | { kind: "string" };

/** One parameter: its name, type, default (`undefined` = required) and a one-line doc. */
export interface ParamSpec {
  /** Name used in `name=value`. Positional arguments follow the order of `params`. */
  name: string;
  /** Type and range. */
  type: ParamType;
  /**
   * Default value. `undefined` makes the parameter required; `null` means "decided at run time"
   * (e.g. a threshold chosen per model family), written `auto` in a policy.
   */
  default?: ParamValue;
  /** One line for `check --explain` and the docs. */
  doc: string;
}

/**
 * What a press does inside a pipeline: `select` decides which entries stay (at most one per
 * pipeline), `rescore` turns the selection press's scores into the kept set instead of its own
 * top-k (right after it: ChunkKV's chunks, DMS's threshold, kvpress's wrappers of a ScorerPress),
 * `augment` adds entries derived from dropped ones (after a `select`), `store` changes how kept
 * entries are stored (last).
 */
export type PressRole = "select" | "rescore" | "augment" | "store";

/**
 * What the runtime must compute after prefill for a press to select entries, given the press's
 * resolved parameters.
 */
export interface PressNeeds {
  /** Rows of observation-window attention (SnapKV-style scoring), if any. */
  observationWindow?: (params: Record<string, ParamValue>) => number;
  /**
   * The press reads the observation only through `windowVotes(min(window, N))` (never
   * `windowAttention`): the runtime then sums the window on the GPU and reads back `H × N`
   * values per layer instead of `H × window × N`.
   */
  windowVotesOnly?: boolean;
  /** Post-RoPE keys of the prompt. */
  keys?: boolean;
  /** CriticalKV's value weights (`LayerScoresInput.projectedValueNorms`). */
  projectedValueNorms?: boolean;
  /** The prompt's values (`LayerScoresInput.values`). */
  values?: boolean;
  /**
   * The prompt's query statistics, counted from position `sink` on
   * (`LayerScoresInput.queryStatistics`), accumulated during prefill.
   */
  queryStatistics?: (params: Record<string, ParamValue>) => { sink: number };
  /**
   * KVzip's context reconstruction in chunks of `chunk` tokens, run after prefill
   * (`LayerScoresInput.reconstruction`).
   */
  reconstruction?: (params: Record<string, ParamValue>) => { chunk: number };
}

/** A press's schema (and, optionally, its runtime behaviour): usable as a policy action. */
export interface PressSchema {
  /** `"press"`. */
  kind: "press";
  /** Name used in policies, e.g. `snap`. */
  name: string;
  /** Role inside a `+` pipeline. */
  role: PressRole;
  /** Whether the press acts once after prefill or keeps the cache bounded while decoding. */
  when: "prefill" | "bounded";
  /** Parameters, in positional order. */
  params: ParamSpec[];
  /** One paragraph: the method and its source. */
  doc: string;
  /**
   * Constraints between parameters that their types cannot say (e.g. KIVI's residual a multiple
   * of its group): given the checked, defaulted parameters, an error (and hint) or `undefined`.
   * The policy checker reports it at the press's name.
   */
  checkParams?: (
    params: Record<string, ParamValue>,
  ) => { error: string; hint?: string } | undefined;
  /** Runtime: what {@link PressSchema.select} needs computed. */
  needs?: PressNeeds;
  /**
   * Runtime: the prompt positions each KV head keeps (sorted, non-empty; see `press.ts`).
   * Absent for presses that keep everything they are given.
   */
  select?: (input: LayerScoresInput, params: Record<string, ParamValue>) => number[][];
  /**
   * Runtime, for scorer presses (kvpress's ScorerPress): per KV head, one float64 score per prompt
   * position, higher = more worth keeping, as the method ranks them before its top-k (positions it
   * always keeps score at least the layer's highest other score). A `rescore` press that follows
   * selects from these. The press's budget is its parameter `k`.
   */
  score?: (input: LayerScoresInput, params: Record<string, ParamValue>) => Float64Array[];
  /**
   * Checked with {@link score}: why these parameters give no single score per position (e.g.
   * KeyDiff's block-wise iteration), or undefined when they do. The checker reports it.
   */
  scoreUnavailable?: (params: Record<string, ParamValue>) => string | undefined;
  /**
   * Runtime, for `rescore` presses: the kept positions per KV head (sorted, non-empty), given the
   * selection press's {@link score}s and its budget `k` (unresolved: a fraction keeps
   * kvpress's `int(L·(1−r))`).
   */
  rescore?: (
    input: LayerScoresInput,
    scores: Float64Array[],
    budget: Budget,
    params: Record<string, ParamValue>,
  ) => number[][];
  /**
   * Runtime, for presses bounded while decoding by evicting the oldest non-sink entry: the
   * per-head capacity and the first evictable row, given the prompt length; `null` when these
   * parameters do not bound the cache (then the press acts once, after prefill).
   */
  bound?: (
    params: Record<string, ParamValue>,
    promptLength: number,
  ) => { capacity: number; ringStart: number } | null;
}

/** A detector's schema: registered under `name`, usable as a selector. */
export interface DetectorSchema {
  /** `"detector"`. */
  kind: "detector";
  /** Name used in policies, e.g. `lazy`. */
  name: string;
  /** What it classifies: whole layers (`layers lazy`) or KV heads (`heads retrieval`). */
  target: "layers" | "heads";
  /** Parameters, in positional order. */
  params: ParamSpec[];
  /** One paragraph: the method and its source. */
  doc: string;
  /**
   * Runtime, for detectors other than the built-ins (which the executor runs itself): the
   * verdict per layer (`target: "layers"`, `boolean[numLayers]`) or per layer and KV head
   * (`target: "heads"`, `boolean[numLayers][numKvHeads]`).
   */
  classify?: (
    input: DetectorInput,
    params: Record<string, ParamValue>,
  ) => Promise<boolean[] | boolean[][]>;
}

/** What a detector's `classify` may ask the runtime after prefill. */
export interface DetectorInput {
  /** Decoder layers. */
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** KV heads. */
  numKvHeads: number;
  /** Prompt tokens. */
  promptLength: number;
  /**
   * The last prompt query's attention probabilities over the prompt, per query head (H arrays
   * of `promptLength` values), for one layer.
   */
  lastQueryAttention(layer: number): Promise<Float32Array[]>;
}

/** Either kind of plugin schema. */
export type PluginSchema = PressSchema | DetectorSchema;

/** Formats a plan value the way a policy would write it (`1024`, `10%`, `max(251, 10%)`). */
export function formatParamValue(value: ParamValue): string {
  if (value === null) return "auto";
  if (typeof value === "object") {
    if ("max" in value) return `max(${value.max.map(formatTerm).join(", ")})`;
    if ("min" in value) return `min(${value.min.map(formatTerm).join(", ")})`;
    return formatTerm(value);
  }
  if (typeof value === "string") return value;
  return String(value);
}

function formatTerm(term: BudgetTerm): string {
  return "tokens" in term ? String(term.tokens) : `${round(term.fraction * 100)}%`;
}

function round(x: number): number {
  return Math.round(x * 1e9) / 1e9;
}
