/**
 * kvpress's leaderboard protocol (NVIDIA/kvpress `evaluation/`, its public RULER-4k leaderboard):
 * every method at the compression ratios 0.25 / 0.5 / 0.75 / 0.875 — the fraction of the cache
 * REMOVED — under the query-agnostic and query-aware protocols, score against ratio. This module
 * turns a method name and a ratio into a policy (a press keeping the fraction 1 − r of each head,
 * written exactly as a user would) and aggregates an evaluation's rows into the board.
 *
 * @module
 */

import type { ResultRow } from "./results.ts";

/** kvpress's leaderboard ratios (fractions of the cache removed). */
export const LEADERBOARD_RATIOS: readonly number[] = [0.25, 0.5, 0.75, 0.875];

/** `1 − ratio` as a policy percentage: 0.875 → `12.5%`. */
function keep(ratio: number): string {
  return `${Math.round((1 - ratio) * 1e6) / 1e4}%`;
}

/**
 * The methods on the board, each a policy for a ratio: the built-in presses at their official or
 * kvpress defaults (SnapKV at kvpress's window 64 / average pool 5 under ChunkKV and CriticalKV, as
 * kvpress's registry composes them), StreamingLLM's window, H2O split evenly between heavy
 * hitters and recent tokens, PyramidKV's and Ada-KV's budgets, DuoAttention's on-the-fly heads
 * (streaming heads keep 6.25 % of the prompt, and their share is set so that 1 − r is kept), and
 * the design card's policy
 * (DESIGN.md: lazy layers windowed, retrieval heads whole, SnapKV elsewhere) with every budget
 * scaled to the ratio. `expected` is the paper's plain press; `expected-adakv` is
 * `AdaKVPress(ExpectedAttentionPress(epsilon=1e-2))`, kvpress's registry entry
 * "adakv_expected_attention_e2" (renamed "expected_attention" in later versions). `dms` is not on
 * the board: kvpress ranks DMS only around KVzap's trained scorers (`DMSPress(KVzapPress(…))` at
 * fixed thresholds, each plotted at the ratio it reached), whose weights come from a model hub.
 */
export const LEADERBOARD_METHODS: Readonly<Record<string, (ratio: number) => string>> = {
  streaming: (r) => `else -> window(sink=4, recent=${keep(r)});`,
  snap: (r) => `else -> snap(k=${keep(r)});`,
  pyramid: (r) => `else -> pyramid(k=${keep(r)});`,
  adakv: (r) => `else -> adakv(k=${keep(r)});`,
  h2o: (r) => `else -> h2o(heavy=${keep(r + (1 - r) / 2)}, recent=${keep(r + (1 - r) / 2)});`,
  knorm: (r) => `else -> knorm(k=${keep(r)});`,
  keydiff: (r) => `else -> keydiff(k=${keep(r)});`,
  tova: (r) => `else -> tova(k=${keep(r)});`,
  expected: (r) => `else -> expected(k=${keep(r)});`,
  "expected-adakv": (r) => `else -> expected(k=${keep(r)}, eps=0.01) + adaptive;`,
  kvzip: (r) => `else -> kvzip(k=${keep(r)});`,
  chunkkv: (r) => `else -> snap(k=${keep(r)}, window=64, pool=5, reduce=avg) + chunkkv(chunk=20);`,
  critical: (r) => `else -> snap(k=${keep(r)}, window=64, pool=5, reduce=avg) + critical;`,
  "critical-adakv": (r) =>
    `else -> snap(k=${keep(r)}, window=64, pool=5, reduce=avg) + critical(adaptive=true);`,
  // Streaming heads keep 4 + 6.25 % (kvpress: 128 + 256 of 4K); their share makes 1 − r kept.
  "duo-onthefly": (r) =>
    `heads duo(ratio=${keep(1 - r / 0.9375)}) -> full;\n` +
    "else -> window(sink=4, recent=6.25%);",
  random: (r) => `else -> random(k=${keep(r)});`,
  "design-card": (r) =>
    `layers lazy -> window(sink=4, recent=${keep(r)});\nheads retrieval -> full;\n` +
    `else -> snap(k=${keep(r)}, pool=7);`,
};

/** A generated policy: the method, the ratio, its name in the report and its text. */
export interface LeaderboardPolicy {
  /** Method name (a key of {@link LEADERBOARD_METHODS}). */
  method: string;
  /** Fraction of the cache removed. */
  ratio: number;
  /** `method @ratio`, e.g. `snap @0.75`. */
  name: string;
  /** The policy text. */
  text: string;
}

/** The board's policies: every method × ratio, methods in the order given. */
export function leaderboardPolicies(
  methods: readonly string[],
  ratios: readonly number[],
): LeaderboardPolicy[] {
  return methods.flatMap((method) => {
    const make = LEADERBOARD_METHODS[method];
    if (!make) {
      throw new RangeError(
        `unknown leaderboard method '${method}' (one of ${
          Object.keys(LEADERBOARD_METHODS).join(", ")
        })`,
      );
    }
    return ratios.map((ratio) => ({
      method,
      ratio,
      name: `${method} @${ratio}`,
      text: `policy "${method} @${ratio}";\n${make(ratio)}\n`,
    }));
  });
}

/** One point of the board: a method's mean score at a ratio under one protocol. */
export interface LeaderboardPoint {
  /** Method. */
  method: string;
  /** Nominal ratio (fraction removed). */
  ratio: number;
  /** `aware` or `agnostic`. */
  protocol: string;
  /** Mean score over the generation tasks' cells (0..1). */
  score: number;
  /** Measured KV bytes kept / full, mean over the cells. */
  kvKept: number;
  /** Cells averaged. */
  cells: number;
}

/**
 * The board from an evaluation's rows: for each generated policy and protocol, the mean accuracy
 * and KV kept over its generation-task rows (perplexity and hit rate are not on the board).
 */
export function leaderboardPoints(
  rows: readonly ResultRow[],
  policies: readonly LeaderboardPolicy[],
  policyName: (p: LeaderboardPolicy, protocol: string) => string,
): LeaderboardPoint[] {
  const points: LeaderboardPoint[] = [];
  for (const p of policies) {
    for (const protocol of ["aware", "agnostic"]) {
      const name = policyName(p, protocol);
      const mine = rows.filter((r) =>
        r.policy === name && r.protocol === protocol && typeof r.accuracy === "number"
      );
      if (!mine.length) continue;
      points.push({
        method: p.method,
        ratio: p.ratio,
        protocol,
        score: mine.reduce((s, r) => s + (r.accuracy as number), 0) / mine.length,
        kvKept: mine.reduce((s, r) => s + r.kv_ratio, 0) / mine.length,
        cells: mine.length,
      });
    }
  }
  return points;
}
