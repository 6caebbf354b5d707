/**
 * Results of an evaluation: per-sample outcomes, aggregated into one row per
 * policy × task × cell (the JSON `results` array), and per-policy summaries for the table and
 * the scatter plot.
 *
 * @module
 */

import type { KvBytes } from "./engine.ts";
import { summarizeHitRates } from "./hitRate.ts";
import type { SampleCell } from "./sample.ts";
import { wilsonInterval } from "./scoring.ts";
import type { TaskName } from "./suite.ts";
import { perplexityOf } from "./tasks/perplexity.ts";

/**
 * kvpress's two protocols: `aware` compresses the prompt with the question at its end;
 * `agnostic` compresses the context alone and appends the question afterwards.
 */
export type EvalProtocol = "aware" | "agnostic";

/** One sentence saying which protocols produced a report's numbers (table and HTML notes). */
export function protocolNote(protocols: readonly EvalProtocol[]): string {
  const aware = "query-aware: the question at the end of the compressed prompt";
  const agnostic = "query-agnostic: the context compressed without the question, which is " +
    "appended to the compressed cache";
  if (protocols.length > 1) return `both protocols (${aware}; ${agnostic})`;
  return protocols[0] === "agnostic" ? agnostic : aware;
}

/** What one policy did on one sample. */
export interface SampleOutcome {
  /** Policy name. */
  policy: string;
  /** Where the question was when the cache was compressed (see {@link EvalProtocol}). */
  protocol: EvalProtocol;
  /** The sample's cell. */
  cell: SampleCell;
  /** Score in 0..1 for generation tasks, else null. */
  score: number | null;
  /** Generated text (generation tasks). */
  output?: string;
  /** Sum of natural-log probabilities and how many tokens (perplexity). */
  logprobs?: { sum: number; count: number };
  /** Hit rate per [layer][kvHead] (hit-rate task). */
  hits?: number[][];
  /** Cache accounting. */
  kv: KvBytes;
  /** Decode speed reported by the engine (generation tasks), else null. */
  decodeTokensPerSecond: number | null;
}

/** One row of the JSON `results` array: a policy on one cell of one task. */
export interface ResultRow {
  /** Policy name. */
  policy: string;
  /** `aware`: the question inside the compressed prompt; `agnostic`: compressed without it. */
  protocol: EvalProtocol;
  /** Task. */
  task: TaskName;
  /** Target context length in tokens. */
  length: number;
  /** Needle depth in percent, or null (tasks with random depths, perplexity, hit rate). */
  depth: number | null;
  /** Mean score in 0..1 (null for ppl and hitrate). */
  accuracy: number | null;
  /** Samples in the cell. */
  samples: number;
  /** 95 % Wilson interval of the accuracy. */
  ci_low: number | null;
  /** 95 % Wilson interval of the accuracy. */
  ci_high: number | null;
  /** Kept bytes / full bytes, summed over the cell's samples. */
  kv_ratio: number;
  /** Mean decode tokens/s (null when nothing was generated). */
  decode_tok_s: number | null;
  /** Perplexity (ppl rows only). */
  perplexity?: number;
  /** Mean hit rate (hitrate rows only). */
  hit_rate?: number;
  /** Mean hit rate per layer (hitrate rows only). */
  hit_rate_by_layer?: number[];
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/** Groups outcomes by policy × task × cell (in first-seen order) into result rows. */
export function aggregateOutcomes(outcomes: readonly SampleOutcome[]): ResultRow[] {
  const groups = new Map<string, SampleOutcome[]>();
  for (const o of outcomes) {
    const key = JSON.stringify([o.policy, o.cell.task, o.cell.length, o.cell.depth]);
    const group = groups.get(key);
    if (group) group.push(o);
    else groups.set(key, [o]);
  }
  return [...groups.values()].map((group) => {
    const { policy, protocol, cell } = group[0];
    const full = group.reduce((s, o) => s + o.kv.fullBytes, 0);
    const kept = group.reduce((s, o) => s + o.kv.keptBytes, 0);
    const scores = group.flatMap((o) => (o.score === null ? [] : [o.score]));
    const accuracy = mean(scores);
    const [ciLow, ciHigh] = accuracy === null
      ? [null, null]
      : wilsonInterval(accuracy, scores.length);
    const speeds = group.flatMap((
      o,
    ) => (o.decodeTokensPerSecond === null ? [] : [o.decodeTokensPerSecond]));
    const row: ResultRow = {
      policy,
      task: cell.task,
      length: cell.length,
      depth: cell.depth,
      protocol,
      accuracy,
      samples: group.length,
      ci_low: ciLow,
      ci_high: ciHigh,
      kv_ratio: full > 0 ? kept / full : 1,
      decode_tok_s: mean(speeds),
    };
    if (cell.task === "ppl") {
      const sum = group.reduce((s, o) => s + (o.logprobs?.sum ?? 0), 0);
      const count = group.reduce((s, o) => s + (o.logprobs?.count ?? 0), 0);
      row.perplexity = perplexityOf(sum, count);
    }
    if (cell.task === "hitrate") {
      const summary = summarizeHitRates(group.map((o) => o.hits ?? []));
      row.hit_rate = summary.mean;
      row.hit_rate_by_layer = summary.byLayer;
    }
    return row;
  });
}

/** A policy's numbers over all its rows (weighted by samples). */
export interface PolicySummary {
  /** Policy name. */
  policy: string;
  /** Mean accuracy per task that has accuracies. */
  accuracyByTask: Partial<Record<TaskName, number>>;
  /** Mean accuracy over every accuracy row, or null when none ran. */
  accuracy: number | null;
  /** Sample-weighted mean perplexity over the ppl rows (all lengths), or null. */
  perplexity: number | null;
  /** Mean hit rate over hitrate rows. */
  hitRate: number | null;
  /** Sample-weighted mean kv_ratio over every row. */
  kvRatio: number;
  /** Sample-weighted mean decode tokens/s over rows that generated. */
  decodeTokS: number | null;
}

function weighted(
  rows: readonly ResultRow[],
  value: (r: ResultRow) => number | null | undefined,
): number | null {
  let sum = 0;
  let weight = 0;
  for (const row of rows) {
    const v = value(row);
    if (v === null || v === undefined || Number.isNaN(v)) continue;
    sum += v * row.samples;
    weight += row.samples;
  }
  return weight ? sum / weight : null;
}

/** Summarises one policy's rows. */
export function summarizePolicy(policy: string, rows: readonly ResultRow[]): PolicySummary {
  const mine = rows.filter((r) => r.policy === policy);
  const accuracyByTask: Partial<Record<TaskName, number>> = {};
  for (const task of new Set(mine.map((r) => r.task))) {
    const value = weighted(mine.filter((r) => r.task === task), (r) => r.accuracy);
    if (value !== null) accuracyByTask[task] = value;
  }
  return {
    policy,
    accuracyByTask,
    accuracy: weighted(mine, (r) => r.accuracy),
    perplexity: weighted(mine.filter((r) => r.task === "ppl"), (r) => r.perplexity),
    hitRate: weighted(mine.filter((r) => r.task === "hitrate"), (r) => r.hit_rate),
    kvRatio: weighted(mine, (r) => r.kv_ratio) ?? 1,
    decodeTokS: weighted(mine, (r) => r.decode_tok_s),
  };
}
