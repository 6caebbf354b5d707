/**
 * The self-contained HTML report (`--out DIR` → `DIR/report.html`): no external resources.
 * It holds the summary table, one needle heatmap per policy (when the needle task ran), the
 * memory-vs-quality scatter, a per-length table of the other tasks, each policy's source text
 * and the JSON results. A tiny inline script records each figure's rendered size in a
 * `data-rendered="WxH"` attribute, which the browser test reads back from the DOM.
 *
 * @module
 */

import { protocolNote, summarizePolicy } from "../results.ts";
import type { EvalReport } from "../runner.ts";
import { escapeHtml } from "./escape.ts";
import { formatLength, needleHeatmapSvg } from "./heatmap.ts";
import { reportToJson } from "./json.ts";
import { hitRateChartSvg } from "./hitRateChart.ts";
import { memoryScatterSvg } from "./scatter.ts";
import { leaderboardChartSvg, leaderboardFigureId } from "./leaderboardChart.ts";

/** `data-figure` id of a policy's needle heatmap. */
export function heatmapFigureId(policyIndex: number): string {
  return `heatmap-${policyIndex}`;
}

/** The `data-figure` ids a report's HTML contains, in page order. */
export function expectedFigureIds(report: EvalReport): string[] {
  const heatmaps = report.suite.tasks.includes("needle")
    ? report.policies.map((_, i) => heatmapFigureId(i))
    : [];
  const hitrate = report.suite.tasks.includes("hitrate") ? ["hitrate"] : [];
  const board = leaderboardProtocols(report).map(leaderboardFigureId);
  return [...heatmaps, "scatter", ...hitrate, ...board];
}

const STYLE = `body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}pre{background:#f5f5f5;padding:1em;overflow:auto}
.figures{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}figcaption{font-size:90%;color:#555}`;

const RENDER_CHECK = `(function () {
  var figures = document.querySelectorAll("svg[data-figure]");
  for (var i = 0; i < figures.length; i++) {
    var box = figures[i].getBoundingClientRect();
    figures[i].setAttribute("data-rendered", Math.round(box.width) + "x" + Math.round(box.height));
  }
  document.body.setAttribute("data-figures-rendered", String(figures.length));
})();`;

function summaryTable(report: EvalReport): string {
  const tasks = report.suite.tasks;
  const head = ["policy", ...tasks, "KV kept", "decode tok/s"].map((h) =>
    `<th>${escapeHtml(h)}</th>`
  );
  const body = report.policies.map((p) => {
    const s = summarizePolicy(p.name, report.results);
    const cells = tasks.map((t) => {
      const v = t === "ppl"
        ? s.perplexity
        : t === "hitrate"
        ? s.hitRate
        : s.accuracyByTask[t] ?? null;
      return v === null ? "–" : v.toFixed(3);
    });
    const speed = s.decodeTokS === null ? "–" : s.decodeTokS.toFixed(1);
    return `<tr><td>${escapeHtml(p.name)}</td>${cells.map((c) => `<td>${c}</td>`).join("")}` +
      `<td>${(s.kvRatio * 100).toFixed(1)}%</td><td>${speed}</td></tr>`;
  });
  return `<table><thead><tr>${head.join("")}</tr></thead><tbody>${body.join("")}</tbody></table>`;
}

function perLengthTable(report: EvalReport): string {
  const rows = report.results.filter((r) => r.task !== "needle");
  if (rows.length === 0) return "";
  const body = rows.map((r) => {
    const value = r.task === "ppl"
      ? `ppl ${r.perplexity?.toFixed(3)}`
      : r.task === "hitrate"
      ? `hit rate ${r.hit_rate?.toFixed(3)}`
      : `${r.accuracy?.toFixed(3)} [${r.ci_low?.toFixed(2)}, ${r.ci_high?.toFixed(2)}]`;
    return `<tr><td>${escapeHtml(r.policy)}</td><td>${escapeHtml(r.task)}</td>` +
      `<td>${formatLength(r.length)}</td><td>${escapeHtml(value)}</td><td>${r.samples}</td>` +
      `<td>${(r.kv_ratio * 100).toFixed(1)}%</td></tr>`;
  });
  return `<h2>Other tasks, per length</h2><table><thead><tr><th>policy</th><th>task</th>` +
    `<th>length</th><th>score [95% CI]</th><th>samples</th><th>KV kept</th></tr></thead>` +
    `<tbody>${body.join("")}</tbody></table>`;
}

/** The protocols the report's leaderboard has points for (agnostic first, kvpress's default). */
function leaderboardProtocols(report: EvalReport): string[] {
  const present = new Set((report.leaderboard ?? []).map((p) => p.protocol));
  return ["agnostic", "aware"].filter((p) => present.has(p));
}

/** The leaderboard section: one score-vs-ratio chart per protocol. */
function leaderboardSection(report: EvalReport): string {
  const protocols = leaderboardProtocols(report);
  if (!protocols.length) return "";
  const charts = protocols.map((protocol) =>
    `<figure>${leaderboardChartSvg(report.leaderboard!, protocol)}<figcaption>${
      protocol === "agnostic" ? "Query-agnostic" : "Query-aware"
    }: mean score over the generation tasks' cells against the compression ratio; the dashed ` +
    "line is the full cache.</figcaption></figure>"
  );
  return `<h2>Leaderboard (kvpress protocol)</h2><div class="figures">${charts.join("")}</div>`;
}

/** Renders the whole report as one HTML document. */
export function renderHtmlReport(report: EvalReport): string {
  const summaries = report.policies.map((p) => summarizePolicy(p.name, report.results));
  const heatmaps = report.suite.tasks.includes("needle")
    ? report.policies.map((p, i) => {
      const rows = report.results.filter((r) => r.policy === p.name && r.task === "needle");
      return `<figure>${needleHeatmapSvg(rows, { title: p.name, figureId: heatmapFigureId(i) })}` +
        `<figcaption>Needle exact match, ${report.suite.samples} samples per cell</figcaption></figure>`;
    })
    : [];
  const sources = report.policies.map((p) =>
    `<h3>${escapeHtml(p.name)} <small>(${escapeHtml(p.file)}, ${
      escapeHtml(p.sourceHash)
    })</small></h3>` +
    `<pre class="policy-source" data-policy="${escapeHtml(p.name)}">${escapeHtml(p.source)}</pre>`
  );
  const json = JSON.stringify(reportToJson(report), null, 1).replace(/</g, "\\u003c");
  const suite = report.suite;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kvpolicy eval: ${escapeHtml(report.model)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>kvpolicy evaluation: ${escapeHtml(report.model)}</h1>
<p>Suite “${escapeHtml(suite.name)}”, seed ${suite.seed}, ${suite.samples} samples per cell,
lengths ${suite.lengths.map(formatLength).join(", ")}, tasks ${escapeHtml(suite.tasks.join(", "))}.
Every policy ran on the same prompts; ${
    escapeHtml(protocolNote([...new Set(report.policies.map((p) => p.protocol))]))
  }.
Run time ${report.elapsedSeconds.toFixed(1)} s.</p>
<h2>Summary</h2>
${summaryTable(report)}
${
    heatmaps.length
      ? `<h2>Needle in a haystack</h2>\n<div class="figures">${heatmaps.join("\n")}</div>`
      : ""
  }
${leaderboardSection(report)}
<h2>Memory vs quality</h2>
<figure>${memoryScatterSvg(summaries)}<figcaption>One point per policy.</figcaption></figure>
${
    report.suite.tasks.includes("hitrate")
      ? `<h2>Hit rate by layer</h2>\n<figure>${hitRateChartSvg(report.results)}<figcaption>` +
        "Share of the prompt positions the full cache's decoding attends to (weight ≥ " +
        `${report.suite.hitRate.threshold}, mean over the KV head's query group) that each policy ` +
        "kept, per layer, averaged over KV heads.</figcaption></figure>"
      : ""
  }
${perLengthTable(report)}
<h2>Policies</h2>
${sources.join("\n")}
<script type="application/json" id="kvpolicy-results">${json}</script>
<script>${RENDER_CHECK}</script>
</body>
</html>
`;
}
