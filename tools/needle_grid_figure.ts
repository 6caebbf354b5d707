/**
 * One figure of a needle grid: the per-policy length × depth heatmaps that `eval --out DIR`
 * draws into its report.html ({@link needleHeatmapSvg}), side by side in one SVG, from the run's
 * checkpoint — so a grid still running, or joined from several `--resume` runs, can be drawn
 * (cells without answers are grey). Query-aware rows; policies in the checkpoint's order.
 *
 * usage: deno run -A tools/needle_grid_figure.ts --out DIR --figure FILE.svg [--columns 3]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { aggregateOutcomes, type SampleOutcome } from "../src/eval/results.ts";
import { needleHeatmapSvg } from "../src/eval/report/heatmap.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    figure: { type: "string" },
    columns: { type: "string", default: "3" },
  },
});
if (!values.out || !values.figure) {
  throw new Error("--out DIR (an eval run's folder with outcomes.jsonl) and --figure FILE");
}
const columns = Math.max(1, Number(values.columns));
const lines = (await Deno.readTextFile(join(values.out, "outcomes.jsonl"))).trim().split("\n");
const outcomes = lines.slice(1).flatMap((line) => {
  try {
    return [(JSON.parse(line) as { outcome: SampleOutcome }).outcome];
  } catch {
    return []; // a line cut short by an interruption
  }
});
const rows = aggregateOutcomes(outcomes).filter((r) =>
  r.task === "needle" && r.protocol === "aware"
);
const policies = [...new Set(rows.map((r) => r.policy))];
if (policies.length === 0) throw new Error(`${values.out}: no query-aware needle answers`);

const maps = policies.map((policy, i) =>
  needleHeatmapSvg(rows.filter((r) => r.policy === policy), {
    title: policy,
    figureId: `grid-${i}`,
  })
);
const sizeOf = (svg: string) => {
  const m = svg.match(/width="([\d.]+)" height="([\d.]+)"/);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
};
const cellW = Math.max(...maps.map((svg) => sizeOf(svg)[0]));
const cellH = Math.max(...maps.map((svg) => sizeOf(svg)[1]));
const width = cellW * Math.min(columns, maps.length);
const height = cellH * Math.ceil(maps.length / columns);
const placed = maps.map((svg, i) =>
  svg.replace("<svg ", `<svg x="${(i % columns) * cellW}" y="${Math.floor(i / columns) * cellH}" `)
);
await Deno.writeTextFile(
  values.figure,
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" aria-label="needle accuracy per policy">\n` +
    `<title>Needle accuracy per policy (${outcomes.length} answers)</title>\n` +
    `<rect width="${width}" height="${height}" fill="#fff"/>\n${placed.join("\n")}\n</svg>\n`,
);
console.log(`wrote ${values.figure}: ${policies.length} policies, ${outcomes.length} answers`);
