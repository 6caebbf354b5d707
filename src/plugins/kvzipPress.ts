/** `kvzip`: KVzip, importance from how much the model looks at each entry to repeat the context. @module */
import { resolveBudget } from "./budget.ts";
import { keepAllHeads, type LayerScoresInput, topPositions } from "./press.ts";
import type { Budget, PressSchema } from "./schema.ts";

/**
 * KVzip (Kim et al., 2025, arXiv 2505.23416; kvpress `kvzip_press.py`): query-agnostic scores from
 * context reconstruction. After prefill the context is fed again, `chunk` tokens at a time, over
 * the cache: the repeat prompt ("Repeat the previous context exactly." for the first chunk, "Repeat
 * the part of the previous context exactly, starting with" + the previous chunk's last 8 tokens
 * after), the chat template's opening of the assistant turn ("\n" without a template), then the
 * chunk itself. Each of these queries attends — softmax over the first `sink` entries, the chunk's
 * own entries and the repeat's entries up to itself — and an entry's score is its highest weight
 * over the repeat's queries and the group's query heads. The repeat's entries are dropped after each
 * chunk. Then the lowest scores go, `k` kept per head on average: over the whole model at once
 * (`layerwise=false`, kvpress's default: layers and heads keep different amounts) or within each
 * layer. It costs about two more prefills (kvpress warns so; `bench` shows it in the press time).
 * The first 4 positions (kvpress's `n_sink`) are never evicted.
 * The scores are computed on the GPU (`src/gpu/kernels/kvzipScores.ts`). Departures: the whole
 * prompt is the context (kvpress leaves the chat template's prefix out), and a head left empty by
 * the cut keeps its best entry (kvpress masks it whole; with the sinks kept, only a cut of more
 * than all but 4 entries per head can empty one).
 */
export const kvzipPress: PressSchema = {
  kind: "press",
  name: "kvzip",
  role: "select",
  when: "prefill",
  params: [
    {
      name: "k",
      type: { kind: "budget" },
      doc: "entries kept per KV head on average (a fraction f keeps f of the cache)",
    },
    {
      name: "chunk",
      type: { kind: "int", min: 16, max: 1 << 16 },
      default: 2048,
      doc: "context tokens repeated per reconstruction pass",
    },
    {
      name: "layerwise",
      type: { kind: "bool" },
      default: false,
      doc: "the same share in every layer (else one cut over the whole model)",
    },
  ],
  doc: "KVzip: keep what the model attends to when asked to repeat the context.",
  needs: { reconstruction: (p) => ({ chunk: p.chunk as number }) },
  select: (input, p) => selectKvzip(input, p as unknown as KvzipParams),
};

/** Parameters of {@link selectKvzip}. */
export interface KvzipParams {
  /** Average entries kept per KV head. */
  k: Budget;
  /** Tokens per reconstruction chunk. */
  chunk: number;
  /** One share per layer. */
  layerwise: boolean;
}

/** Sink entries every repeat query also attends to (kvpress's `n_sink`). */
export const KVZIP_SINK = 4;
/** Tokens of the previous chunk quoted in the next repeat prompt (kvpress's `prev_postfix_size`). */
export const KVZIP_QUOTE = 8;

/** The token ids of the repeat prompts (see {@link kvzipPress}). */
export interface RepeatPrompts {
  /** "\n\nRepeat the previous context exactly." */
  first: number[];
  /** "\n\nRepeat the part of the previous context exactly, starting with" */
  later: number[];
  /** The assistant turn's opening from the chat template, or "\n". */
  suffix: number[];
}

/** The reconstruction chunks of a context of `n` tokens: `[start, end)` ranges of `chunk`. */
export function kvzipChunks(n: number, chunk: number): [number, number][] {
  const out: [number, number][] = [];
  for (let start = 0; start < n; start += chunk) out.push([start, Math.min(n, start + chunk)]);
  return out;
}

/** The ids fed for chunk `c` of `context`. */
export function kvzipRepeatIds(
  context: readonly number[],
  chunks: readonly [number, number][],
  c: number,
  prompts: RepeatPrompts,
): number[] {
  const [start, end] = chunks[c];
  const quote = c === 0
    ? prompts.first
    : [...prompts.later, ...context.slice(Math.max(chunks[c - 1][0], start - KVZIP_QUOTE), start)];
  return [...quote, ...prompts.suffix, ...context.slice(start, end)];
}

/** Per score table: the sink-protected scores and, per ratio and mode, each head's pruned count. */
const cuts = new WeakMap<
  Float64Array[][],
  { scores: Float64Array[][]; counts: Map<string, number[][]> }
>();

/**
 * The scores with the first {@link KVZIP_SINK} positions of every head raised above all others:
 * kvpress never evicts them (`score_val[..., :n_sink] = score_val.amax() + 1`).
 */
function protectSinks(all: Float64Array[][]): Float64Array[][] {
  let top = -Infinity;
  for (const layer of all) for (const head of layer) for (const s of head) top = Math.max(top, s);
  return all.map((layer) =>
    layer.map((head) => {
      const out = Float64Array.from(head);
      out.fill(top + 1, 0, Math.min(KVZIP_SINK, out.length));
      return out;
    })
  );
}

/**
 * How many entries each (layer, KV head) loses, as kvpress 0.5.5's `compress_post` counts them:
 * the ⌊total·r⌋ lowest scores of the whole model (`layerwise=false`), or the ⌊H·N·r⌋ lowest of each
 * layer. Ties go to the later position first.
 */
function prunedCounts(all: Float64Array[][], ratio: number, layerwise: boolean): number[][] {
  const perHead = all.map((layer) => layer.map(() => 0));
  const entries = (layers: number[]) =>
    layers.flatMap((l) =>
      all[l].flatMap((head, h) => Array.from(head, (s, i) => ({ s, l, h, i })))
    );
  const lowest = (xs: { s: number; l: number; h: number; i: number }[], count: number) =>
    xs.sort((a, b) => a.s - b.s || b.i - a.i || b.l - a.l || b.h - a.h).slice(0, count);
  const groups = layerwise ? all.map((_, l) => [l]) : [all.map((_, l) => l)];
  for (const layers of groups) {
    const xs = entries(layers);
    for (const x of lowest(xs, Math.floor(xs.length * ratio))) perHead[x.l][x.h]++;
  }
  return perHead;
}

/**
 * KVzip selection for one layer from `input.reconstruction()` (every layer's scores): the ratio
 * removed is 1 − f for a fraction f, else 1 − k/N; each head keeps its highest-scoring entries, as
 * many as the cut leaves it (at least one).
 */
export function selectKvzip(
  input: Pick<LayerScoresInput, "layer" | "promptLength" | "numKvHeads" | "reconstruction">,
  p: KvzipParams,
): number[][] {
  const n = input.promptLength;
  const ratio = "fraction" in p.k ? 1 - p.k.fraction : 1 - resolveBudget(p.k, n, "floor") / n;
  if (ratio <= 0) return keepAllHeads(input.numKvHeads, n);
  if (!input.reconstruction) throw new Error("kvzip needs the context-reconstruction scores");
  const all = input.reconstruction();
  const key = `${ratio}:${p.layerwise}`;
  let cut = cuts.get(all);
  if (!cut) cuts.set(all, cut = { scores: protectSinks(all), counts: new Map() });
  let counts = cut.counts.get(key);
  if (!counts) cut.counts.set(key, counts = prunedCounts(cut.scores, ratio, p.layerwise));
  return cut.scores[input.layer].map((scores, h) =>
    topPositions(scores, Math.max(1, n - counts![input.layer][h]))
  );
}
