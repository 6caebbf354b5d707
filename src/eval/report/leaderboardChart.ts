/**
 * The leaderboard's figure, as kvpress's public leaderboard draws it: score against compression
 * ratio (the fraction of the cache removed), one line per method, one chart per protocol; the
 * full cache's score as a dashed line.
 *
 * @module
 */

import type { LeaderboardPoint } from "../leaderboard.ts";
import { escapeHtml, num } from "./escape.ts";
import { PALETTE } from "./scatter.ts";

/** The figure id of a protocol's chart (`data-figure`). */
export function leaderboardFigureId(protocol: string): string {
  return `leaderboard-${protocol}`;
}

/** An SVG line chart of `points` of one `protocol` (score in 0..1 against ratio in 0..1). */
export function leaderboardChartSvg(points: readonly LeaderboardPoint[], protocol: string): string {
  const mine = points.filter((p) => p.protocol === protocol);
  const full = mine.find((p) => p.method === "full");
  const methods = [...new Set(mine.filter((p) => p.method !== "full").map((p) => p.method))];
  const [left, top, plotW, plotH] = [56, 30, 420, 260];
  const width = left + plotW + 150, height = top + plotH + 56;
  const px = (x: number) => left + x * plotW;
  const py = (y: number) => top + plotH - y * plotH;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" data-figure="${leaderboardFigureId(protocol)}" ` +
    `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" ` +
    `aria-label="score versus compression ratio, ${
      escapeHtml(protocol)
    }" font-family="sans-serif" font-size="11">`,
    `<title>Score vs compression ratio (${escapeHtml(protocol)})</title>`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
  ];
  for (let k = 0; k <= 4; k++) {
    const v = k / 4;
    parts.push(
      `<line x1="${num(px(v))}" y1="${top}" x2="${num(px(v))}" y2="${
        top + plotH
      }" stroke="#eee"/>` +
        `<text x="${num(px(v))}" y="${top + plotH + 16}" text-anchor="middle">${num(v, 2)}</text>` +
        `<line x1="${left}" y1="${num(py(v))}" x2="${left + plotW}" y2="${
          num(py(v))
        }" stroke="#eee"/>` +
        `<text x="${left - 6}" y="${num(py(v) + 4)}" text-anchor="end">${num(v, 2)}</text>`,
    );
  }
  parts.push(
    `<text x="${left + plotW / 2}" y="${height - 12}" text-anchor="middle">compression ratio ` +
      `(fraction of the cache removed)</text>`,
    `<text x="14" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 14 ${
      top + plotH / 2
    })">mean score</text>`,
  );
  if (full) {
    parts.push(
      `<line data-method="full" x1="${left}" y1="${num(py(full.score))}" x2="${left + plotW}" ` +
        `y2="${num(py(full.score))}" stroke="#333" stroke-dasharray="4 3"/>` +
        `<text x="${left + plotW + 8}" y="${num(py(full.score) + 4)}">full (${
          num(full.score, 2)
        })</text>`,
    );
  }
  methods.forEach((method, i) => {
    const color = PALETTE[i % PALETTE.length];
    // Past the palette, lines are dashed so that no two methods look alike.
    const dash = i >= PALETTE.length ? ' stroke-dasharray="6 3"' : "";
    const line = mine.filter((p) => p.method === method).sort((a, b) => a.ratio - b.ratio);
    const path = line.map((p) => `${num(px(p.ratio))},${num(py(p.score))}`).join(" ");
    parts.push(
      `<g data-method="${
        escapeHtml(method)
      }"><polyline points="${path}" fill="none" stroke="${color}" stroke-width="1.5"${dash}/>` +
        line.map((p) =>
          `<circle cx="${num(px(p.ratio))}" cy="${num(py(p.score))}" r="3" fill="${color}">` +
          `<title>${escapeHtml(method)} @${escapeHtml(p.setting ?? String(p.ratio))}: ${
            num(p.score, 3)
          } (KV kept ${num(p.kvKept * 100, 1)}%)</title></circle>`
        ).join("") +
        `<text x="${left + plotW + 8}" y="${top + 14 + 14 * i}" fill="${color}">${
          escapeHtml(method)
        }</text></g>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/**
 * The board as a plain-text table per protocol: budget methods × ratios, mean scores; then the
 * measured methods (DMS, KIVI), one line per setting with the ratio it reached.
 */
export function leaderboardTable(points: readonly LeaderboardPoint[]): string {
  const out: string[] = [];
  for (const protocol of ["agnostic", "aware"]) {
    const mine = points.filter((p) => p.protocol === protocol);
    if (!mine.length) continue;
    const budgeted = mine.filter((p) => p.setting === null);
    const ratios = [...new Set(budgeted.filter((p) => p.method !== "full").map((p) => p.ratio))]
      .sort((a, b) => a - b);
    const methods = [...new Set(budgeted.map((p) => p.method))];
    const rows = methods.map((m) => {
      const of = budgeted.filter((p) => p.method === m);
      const at = (r: number) => of.find((p) => p.ratio === r);
      const cells = m === "full"
        ? ratios.map(() => of[0].score.toFixed(3))
        : ratios.map((r) => at(r)?.score.toFixed(3) ?? "-");
      const mean = of.reduce((s, p) => s + p.score, 0) / of.length;
      return [m, ...cells, mean.toFixed(3)];
    });
    out.push(`leaderboard (${protocol}): mean score by compression ratio`);
    out.push(...textTable(["method", ...ratios.map((r) => `r=${r}`), "mean"], rows));
    const measured = mine.filter((p) => p.setting !== null);
    if (measured.length) {
      out.push(`leaderboard (${protocol}): methods without a budget, at the ratio each reached`);
      out.push(...textTable(
        ["method", "setting", "r (measured)", "score"],
        measured.map((p) => [p.method, p.setting!, p.ratio.toFixed(3), p.score.toFixed(3)]),
      ));
    }
  }
  return out.join("\n");
}

/** `head` and `rows` as aligned text lines, a rule under the head. */
function textTable(head: string[], rows: string[][]): string[] {
  const widths = head.map((_, j) => Math.max(...[head, ...rows].map((r) => r[j].length)));
  const fmt = (r: string[]) => r.map((c, j) => c.padEnd(widths[j])).join("  ").trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)];
}
