/**
 * The terminal summary: one row per policy, one column per task (mean accuracy over its cells,
 * perplexity for `ppl`, mean hit rate for `hitrate`), then KV memory kept and decode speed.
 *
 * @module
 */

import { leaderboardTable } from "./leaderboardChart.ts";
import { type PolicySummary, protocolNote, summarizePolicy } from "../results.ts";
import type { EvalReport } from "../runner.ts";
import type { TaskName } from "../suite.ts";

function cellText(summary: PolicySummary, task: TaskName): string {
  if (task === "ppl") return summary.perplexity === null ? "-" : summary.perplexity.toFixed(3);
  if (task === "hitrate") return summary.hitRate === null ? "-" : summary.hitRate.toFixed(3);
  const accuracy = summary.accuracyByTask[task];
  return accuracy === undefined ? "-" : accuracy.toFixed(3);
}

/** Lays out rows of cells as aligned columns (first column left-aligned, the rest right). */
export function alignColumns(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join("\n");
}

/** The summary table of a report, as plain text. */
export function renderSummaryTable(report: EvalReport): string {
  const tasks = report.suite.tasks;
  const header = [
    "policy",
    ...tasks.map((t) => (t === "ppl" ? "ppl" : t)),
    "kv kept",
    "decode tok/s",
  ];
  const rows = report.policies.map((p) => {
    const summary = summarizePolicy(p.name, report.results);
    return [
      p.name,
      ...tasks.map((t) => cellText(summary, t)),
      `${(summary.kvRatio * 100).toFixed(1)}%`,
      summary.decodeTokS === null ? "-" : summary.decodeTokS.toFixed(1),
    ];
  });
  const samples = report.suite.samples;
  const notes = `model ${report.model}; suite "${report.suite.name}", seed ${report.suite.seed}, ` +
    `${samples} sample${samples === 1 ? "" : "s"} per cell; accuracy in 0..1 (ppl: perplexity, ` +
    `hitrate: mean hit rate); ${
      protocolNote([...new Set(report.policies.map((p) => p.protocol))])
    }`;
  const board = report.leaderboard ? `\n\n${leaderboardTable(report.leaderboard)}` : "";
  return `${alignColumns([header, ...rows])}\n${notes}${board}`;
}
