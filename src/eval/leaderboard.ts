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
 * "adakv_expected_attention_e2" (renamed "expected_attention" in later versions). DMS and KIVI
 * have no budget: {@link LEADERBOARD_MEASURED_METHODS}.
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

/** A method whose knob is not a budget: fixed settings, each plotted at the ratio it reached. */
export interface MeasuredMethod {
  /** The settings run, in order. */
  settings: readonly number[];
  /** A setting's name in the report, e.g. `t=-0.74` or `4-bit`. */
  label: (setting: number) => string;
  /** The policy rule of a setting. */
  policy: (setting: number) => string;
}

/**
 * Methods without a budget, each run at fixed settings and plotted at the compression ratio it
 * reached (1 − the measured KV kept), as kvpress's board plots `DMSPress(KVzapPress(…))` at fixed
 * thresholds. `dms` is kvpress's `DMSPress` (arXiv 2506.05345, its dense-prefill variant: the
 * last 128 positions protected, older entries evicted below the threshold) on the query-free
 * KeyDiff score, minus the cosine to the mean key: KVzap's trained scorer needs weights from a
 * model hub. Its thresholds were chosen on a calibration haystack (another seed than the board's
 * prompts; `tools/dms_thresholds.ts` calibrates any model) for SmolLM2-135M, half of whose
 * KeyDiff scores lie between −0.77 and −0.68 at 4K: they keep about 75, 50, 25 and 12 % of its
 * entries there, and differ by head. `kivi` is KIVI's quantized cache
 * (arXiv 2402.02750; groups of 32, 32 recent tokens in full precision) at 8, 4 and 2 bits: it
 * keeps every entry, and its ratio is the bytes it saves.
 */
export const LEADERBOARD_MEASURED_METHODS: Readonly<Record<string, MeasuredMethod>> = {
  dms: {
    settings: [-0.78, -0.74, -0.69, -0.64],
    label: (t) => `t=${t}`,
    policy: (t) => `else -> keydiff(k=100%) + dms(threshold=${t}, window=128);`,
  },
  kivi: {
    settings: [8, 4, 2],
    label: (bits) => `${bits}-bit`,
    policy: (bits) => `else -> quant(bits=${bits});`,
  },
};

/** Every method the board knows, budget methods first: the default of `--methods`. */
export const LEADERBOARD_ALL_METHODS: readonly string[] = [
  ...Object.keys(LEADERBOARD_METHODS),
  ...Object.keys(LEADERBOARD_MEASURED_METHODS),
];

/** A generated policy: the method, its ratio or setting, its name in the report and its text. */
export interface LeaderboardPolicy {
  /** Method name (a key of {@link LEADERBOARD_METHODS} or {@link LEADERBOARD_MEASURED_METHODS}). */
  method: string;
  /** Fraction of the cache removed; null for a measured method (its point takes the measured one). */
  ratio: number | null;
  /** A measured method's setting (`t=-0.74`, `4-bit`); null for a budget method. */
  setting: string | null;
  /** `method @ratio` or `method @setting`, e.g. `snap @0.75`, `kivi @4-bit`. */
  name: string;
  /** The policy text. */
  text: string;
}

/**
 * The board's policies: every method × ratio, methods in the order given; a measured method at
 * each of its own settings instead of the ratios.
 */
export function leaderboardPolicies(
  methods: readonly string[],
  ratios: readonly number[],
): LeaderboardPolicy[] {
  return methods.flatMap((method): LeaderboardPolicy[] => {
    const measured = LEADERBOARD_MEASURED_METHODS[method];
    if (measured) {
      return measured.settings.map((value) => {
        const setting = measured.label(value);
        const name = `${method} @${setting}`;
        return {
          method,
          ratio: null,
          setting,
          name,
          text: `policy "${name}";\n${measured.policy(value)}\n`,
        };
      });
    }
    const make = LEADERBOARD_METHODS[method];
    if (!make) {
      throw new RangeError(
        `unknown leaderboard method '${method}' (one of ${LEADERBOARD_ALL_METHODS.join(", ")})`,
      );
    }
    return ratios.map((ratio) => ({
      method,
      ratio,
      setting: null,
      name: `${method} @${ratio}`,
      text: `policy "${method} @${ratio}";\n${make(ratio)}\n`,
    }));
  });
}

/** One point of the board: a method's mean score at a ratio under one protocol. */
export interface LeaderboardPoint {
  /** Method. */
  method: string;
  /** Fraction removed: the nominal ratio, or for a measured method 1 − `kvKept`. */
  ratio: number;
  /** A measured method's setting; null for a budget method (and the full cache). */
  setting: string | null;
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
 * and KV kept over its generation-task rows (perplexity and hit rate are not on the board); a
 * measured method's point sits at the ratio it reached.
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
      const kvKept = mine.reduce((s, r) => s + r.kv_ratio, 0) / mine.length;
      points.push({
        method: p.method,
        ratio: p.ratio ?? 1 - kvKept,
        setting: p.setting,
        protocol,
        score: mine.reduce((s, r) => s + (r.accuracy as number), 0) / mine.length,
        kvKept,
        cells: mine.length,
      });
    }
  }
  return points;
}
