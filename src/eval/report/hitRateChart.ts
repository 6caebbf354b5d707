/**
 * SnapKV's layer-wise hit-rate curves (the SnapKV paper's Figure 2) as an SVG line chart: x =
 * layer, y = share of the positions the full-cache decoding attends to that the policy kept, one
 * line per policy.
 *
 * @module
 */

import type { ResultRow } from "../results.ts";
import { escapeHtml, num } from "./escape.ts";
import { PALETTE } from "./scatter.ts";

/** Per policy, the hit rate by layer averaged over its hit-rate rows (sample-weighted). */
export function hitRateCurves(rows: readonly ResultRow[]): { policy: string; byLayer: number[] }[] {
  const out = new Map<string, { sums: number[]; weights: number[] }>();
  for (const r of rows) {
    if (r.task !== "hitrate" || !r.hit_rate_by_layer) continue;
    const acc = out.get(r.policy) ?? { sums: [], weights: [] };
    r.hit_rate_by_layer.forEach((v, l) => {
      if (!Number.isFinite(v)) return;
      acc.sums[l] = (acc.sums[l] ?? 0) + v * r.samples;
      acc.weights[l] = (acc.weights[l] ?? 0) + r.samples;
    });
    out.set(r.policy, acc);
  }
  return [...out].map(([policy, a]) => ({
    policy,
    byLayer: a.sums.map((s, l) => s / a.weights[l]),
  }));
}

/** The chart, `data-figure="hitrate"`. */
export function hitRateChartSvg(rows: readonly ResultRow[]): string {
  const curves = hitRateCurves(rows);
  const layers = Math.max(1, ...curves.map((c) => c.byLayer.length));
  const [left, top, plotW, plotH] = [64, 30, 420, 260];
  const width = left + plotW + 190;
  const height = top + plotH + 56;
  const px = (l: number) => left + (layers === 1 ? plotW / 2 : (l / (layers - 1)) * plotW);
  const py = (y: number) => top + plotH - y * plotH;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" data-figure="hitrate" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<text x="${left}" y="18" font-size="14">Hit rate by layer (SnapKV Fig. 2)</text>`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
  ];
  for (let t = 0; t <= 4; t++) {
    const y = t / 4;
    parts.push(
      `<line x1="${left - 4}" x2="${left}" y1="${num(py(y))}" y2="${num(py(y))}" stroke="#999"/>`,
      `<text x="${left - 8}" y="${num(py(y) + 4)}" text-anchor="end">${y.toFixed(2)}</text>`,
    );
  }
  for (let l = 0; l < layers; l++) {
    parts.push(
      `<text x="${num(px(l))}" y="${top + plotH + 18}" text-anchor="middle">${l}</text>`,
    );
  }
  parts.push(
    `<text x="${left + plotW / 2}" y="${height - 8}" text-anchor="middle">layer</text>`,
  );
  curves.forEach((c, i) => {
    const color = PALETTE[i % PALETTE.length];
    const points = c.byLayer.map((v, l) => `${num(px(l))},${num(py(v))}`).join(" ");
    parts.push(`<polyline points="${points}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [l, v] of c.byLayer.entries()) {
      parts.push(`<circle cx="${num(px(l))}" cy="${num(py(v))}" r="3" fill="${color}"/>`);
    }
    const ly = top + 14 + i * 18;
    parts.push(
      `<line x1="${left + plotW + 12}" x2="${left + plotW + 30}" y1="${ly - 4}" y2="${
        ly - 4
      }" stroke="${color}" stroke-width="2"/>`,
      `<text x="${left + plotW + 36}" y="${ly}">${escapeHtml(c.policy)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}
