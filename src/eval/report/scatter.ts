/**
 * Memory vs quality as an SVG scatter plot: one labelled point per policy, x = KV memory kept
 * (% of the full cache), y = mean accuracy over every accuracy cell (or perplexity when only
 * perplexity ran; lower is better then).
 *
 * @module
 */

import type { PolicySummary } from "../results.ts";
import { escapeHtml, num } from "./escape.ts";

/** Line and point colours, one per policy. */
export const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#8c564b",
  "#e377c2",
  "#17becf",
];

/** An SVG scatter of `summaries` with `data-figure="scatter"`. */
export function memoryScatterSvg(summaries: readonly PolicySummary[]): string {
  // y: accuracy when any task has one, else perplexity, else the hit rate (both in 0..1 fixed).
  const mode = summaries.some((s) => s.accuracy !== null)
    ? "accuracy"
    : summaries.some((s) => s.perplexity !== null)
    ? "ppl"
    : "hitrate";
  const yOf = (s: PolicySummary) =>
    mode === "accuracy" ? s.accuracy : mode === "ppl" ? s.perplexity : s.hitRate;
  const ys = summaries.map(yOf).filter((v): v is number => v !== null && Number.isFinite(v));
  let [yMin, yMax] = mode !== "ppl"
    ? [0, 1]
    : [Math.min(...ys, Infinity), Math.max(...ys, -Infinity)];
  if (!Number.isFinite(yMin)) [yMin, yMax] = [0, 1];
  if (yMax - yMin < 1e-9) [yMin, yMax] = [yMin - 0.5, yMax + 0.5];
  const xMax = Math.max(1, ...summaries.map((s) => s.kvRatio));
  const [left, top, plotW, plotH] = [64, 30, 420, 280];
  const width = left + plotW + 150;
  const height = top + plotH + 56;
  const px = (x: number) => left + (x / xMax) * plotW;
  const py = (y: number) => top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
  const yLabel = mode === "accuracy"
    ? "Mean accuracy"
    : mode === "ppl"
    ? "Perplexity (lower is better)"
    : "Mean hit rate";
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" data-figure="scatter" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" role="img" aria-label="KV memory kept versus quality" ` +
      `font-family="sans-serif" font-size="11">`,
  );
  parts.push("<title>KV memory kept vs quality, one point per policy</title>");
  parts.push(
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
  );
  for (let k = 0; k <= 4; k++) {
    const xv = (xMax * k) / 4;
    const yv = yMin + ((yMax - yMin) * k) / 4;
    parts.push(
      `<line x1="${num(px(xv))}" y1="${top}" x2="${num(px(xv))}" y2="${
        top + plotH
      }" stroke="#eee"/>` +
        `<text x="${num(px(xv))}" y="${top + plotH + 16}" text-anchor="middle">${
          num(xv * 100, 0)
        }%</text>`,
    );
    parts.push(
      `<line x1="${left}" y1="${num(py(yv))}" x2="${left + plotW}" y2="${
        num(py(yv))
      }" stroke="#eee"/>` +
        `<text x="${left - 6}" y="${num(py(yv) + 4)}" text-anchor="end">${num(yv, 2)}</text>`,
    );
  }
  parts.push(
    `<text x="${left + plotW / 2}" y="${
      top + plotH + 40
    }" text-anchor="middle">KV memory kept (% of full cache)</text>`,
  );
  parts.push(
    `<text x="16" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      top + plotH / 2
    })">${yLabel}</text>`,
  );
  summaries.forEach((s, i) => {
    const y = yOf(s);
    if (y === null || !Number.isFinite(y)) return;
    const colour = PALETTE[i % PALETTE.length];
    const [cx, cy] = [px(s.kvRatio), py(y)];
    parts.push(
      `<g data-policy="${escapeHtml(s.policy)}"><title>${
        escapeHtml(`${s.policy}: ${num(s.kvRatio * 100, 1)}% of the cache, ${num(y, 3)}`)
      }</title><circle cx="${num(cx)}" cy="${num(cy)}" r="6" fill="${colour}"/>` +
        `<text x="${num(cx + 9)}" y="${num(cy + 4)}">${escapeHtml(s.policy)}</text></g>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}
