/**
 * The JSON form of a report (`--json`, and `results.json` beside the HTML report). Its
 * `results` array holds one row per policy × task × cell (see {@link ResultRow}); `outputs`
 * holds every generated answer for inspection.
 *
 * @module
 */

import type { EvalProtocol, ResultRow } from "../results.ts";
import type { EvalReport } from "../runner.ts";

/** The JSON document of a report. */
export interface EvalJson {
  /** Model name. */
  model: string;
  /** The suite's grid and seed. */
  suite: {
    name: string;
    seed: number;
    samples: number;
    lengths: number[];
    depths: number[];
    tasks: string[];
    /** The text file perplexity scored (`ppl.text`), when not the built-in filler. */
    ppl_text?: string;
  };
  /**
   * True when every policy ran query-aware (the question inside the compressed prompt); each
   * result row's `protocol` says which protocol produced it.
   */
  query_aware: boolean;
  /** The protocols that ran (kvpress's terms: `aware`, `agnostic`). */
  protocols: EvalProtocol[];
  /** Policies, in run order. */
  policies: { name: string; file: string; source_hash: string; protocol: EvalProtocol }[];
  /** One row per policy × task × cell. */
  results: ResultRow[];
  /** Every generated answer. */
  outputs: {
    policy: string;
    protocol: EvalProtocol;
    task: string;
    length: number;
    depth: number | null;
    index: number;
    score: number | null;
    output: string;
  }[];
  /** Wall-clock seconds of the run. */
  elapsed_s: number;
  /**
   * With `--leaderboard`: one point per method × ratio × protocol (mean score over the generation
   * cells, measured KV kept); a DMS or KIVI point has its `setting` and sits at the ratio it
   * reached (1 − `kv_kept`).
   */
  leaderboard?: {
    method: string;
    ratio: number;
    setting: string | null;
    protocol: string;
    score: number;
    kv_kept: number;
    cells: number;
  }[];
}

/** Converts a report into its JSON document. */
export function reportToJson(report: EvalReport): EvalJson {
  const { suite } = report;
  const protocols = [...new Set(report.policies.map((p) => p.protocol))];
  return {
    model: report.model,
    suite: {
      name: suite.name,
      seed: suite.seed,
      samples: suite.samples,
      lengths: suite.lengths,
      depths: suite.depths,
      tasks: suite.tasks,
      ...(suite.perplexity.text !== undefined ? { ppl_text: suite.perplexity.text } : {}),
    },
    query_aware: protocols.every((p) => p === "aware"),
    protocols,
    policies: report.policies.map((p) => ({
      name: p.name,
      file: p.file,
      source_hash: p.sourceHash,
      protocol: p.protocol,
    })),
    results: report.results,
    outputs: report.outcomes.filter((o) => o.output !== undefined).map((o) => ({
      policy: o.policy,
      protocol: o.protocol,
      task: o.cell.task,
      length: o.cell.length,
      depth: o.cell.depth,
      index: o.cell.index,
      score: o.score,
      output: o.output!,
    })),
    elapsed_s: Math.round(report.elapsedSeconds * 1000) / 1000,
    ...(report.leaderboard && {
      leaderboard: report.leaderboard.map((p) => ({
        method: p.method,
        ratio: p.ratio,
        setting: p.setting,
        protocol: p.protocol,
        score: p.score,
        kv_kept: p.kvKept,
        cells: p.cells,
      })),
    }),
  };
}
