/**
 * The classic needle-in-a-haystack figure as SVG: context length on the x axis, needle depth on
 * the y axis (0 % at the top), each cell coloured by accuracy (red 0 → yellow → green 1) with its
 * value written in it, axis labels, and a colour scale.
 *
 * @module
 */

import type { ResultRow } from "../results.ts";
import { escapeHtml, num } from "./escape.ts";

/** RGB colour of an accuracy in 0..1: red → yellow → green. Grey for a missing value. */
export function accuracyColour(accuracy: number | null): string {
  if (accuracy === null || Number.isNaN(accuracy)) return "rgb(200,200,200)";
  const a = Math.min(1, Math.max(0, accuracy));
  const [r, g, b] = a < 0.5 ? [215, Math.round(48 + (a / 0.5) * (190 - 48)), 39] : [
    Math.round(215 - ((a - 0.5) / 0.5) * (215 - 26)),
    Math.round(190 - ((a - 0.5) / 0.5) * 40),
    Math.round(39 + ((a - 0.5) / 0.5) * 41),
  ];
  return `rgb(${r},${g},${b})`;
}

/** `4096` → `4k`, `1536` → `1.5k`, `500` → `500`. */
export function formatLength(tokens: number): string {
  return tokens >= 1024 && tokens % 128 === 0 ? `${num(tokens / 1024, 2)}k` : String(tokens);
}

/** Options of {@link needleHeatmapSvg}. */
export interface HeatmapOptions {
  /** Title above the grid (the policy name). */
  title: string;
  /** Value of `data-figure` (identifies the figure for checks). */
  figureId: string;
}

/**
 * An SVG heatmap of needle rows (one policy's `needle` task): every length × depth cell of
 * `rows`; cells without a row are grey.
 */
export function needleHeatmapSvg(rows: readonly ResultRow[], options: HeatmapOptions): string {
  const lengths = [...new Set(rows.map((r) => r.length))].sort((a, b) => a - b);
  const depths = [...new Set(rows.map((r) => r.depth ?? 0))].sort((a, b) => a - b);
  const cellW = Math.max(44, Math.min(90, 560 / Math.max(1, lengths.length)));
  const cellH = 26;
  const left = 70;
  const top = 40;
  const gridW = cellW * lengths.length;
  const gridH = cellH * depths.length;
  const scaleX = left + gridW + 24;
  const width = scaleX + 70;
  const height = top + gridH + 56;
  const gradientId = `scale-${options.figureId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" data-figure="${escapeHtml(options.figureId)}" ` +
      `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" ` +
      `aria-label="${
        escapeHtml(`needle accuracy of ${options.title}`)
      }" font-family="sans-serif" font-size="11">`,
  );
  parts.push(`<title>${escapeHtml(`Needle accuracy: ${options.title}`)}</title>`);
  parts.push(
    `<text x="${left + gridW / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${
      escapeHtml(options.title)
    }</text>`,
  );
  depths.forEach((depth, j) => {
    lengths.forEach((length, i) => {
      const row = rows.find((r) => r.length === length && (r.depth ?? 0) === depth);
      const accuracy = row?.accuracy ?? null;
      const x = left + i * cellW;
      const y = top + j * cellH;
      const label = accuracy === null ? "–" : accuracy.toFixed(2);
      const tip = row
        ? `length ${length}, depth ${depth}%: ${label} (n=${row.samples}, 95% CI ${
          row.ci_low?.toFixed(2)
        }–${row.ci_high?.toFixed(2)})`
        : `length ${length}, depth ${depth}%: no samples`;
      parts.push(
        `<g><title>${escapeHtml(tip)}</title><rect x="${num(x)}" y="${y}" width="${
          num(cellW)
        }" height="${cellH}" ` +
          `fill="${accuracyColour(accuracy)}" stroke="#fff"/>` +
          `<text x="${num(x + cellW / 2)}" y="${
            y + cellH / 2 + 4
          }" text-anchor="middle">${label}</text></g>`,
      );
    });
    parts.push(
      `<text x="${left - 6}" y="${top + j * cellH + cellH / 2 + 4}" text-anchor="end">${
        num(depth)
      }%</text>`,
    );
  });
  lengths.forEach((length, i) => {
    parts.push(
      `<text x="${num(left + i * cellW + cellW / 2)}" y="${
        top + gridH + 16
      }" text-anchor="middle">${formatLength(length)}</text>`,
    );
  });
  parts.push(
    `<text x="${left + gridW / 2}" y="${
      top + gridH + 38
    }" text-anchor="middle">Context length (tokens)</text>`,
  );
  parts.push(
    `<text x="16" y="${top + gridH / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      top + gridH / 2
    })">Needle depth (%)</text>`,
  );
  // Colour scale: 1 at the top, 0 at the bottom.
  const stops = [1, 0.75, 0.5, 0.25, 0].map((a, k) =>
    `<stop offset="${k * 25}%" stop-color="${accuracyColour(a)}"/>`
  ).join("");
  parts.push(
    `<defs><linearGradient id="${gradientId}" x1="0" y1="0" x2="0" y2="1">${stops}</linearGradient></defs>`,
  );
  parts.push(
    `<rect x="${scaleX}" y="${top}" width="14" height="${gridH}" fill="url(#${gradientId})" stroke="#999"/>`,
  );
  parts.push(`<text x="${scaleX + 18}" y="${top + 8}">1.0</text>`);
  parts.push(`<text x="${scaleX + 18}" y="${top + gridH / 2 + 4}">0.5</text>`);
  parts.push(`<text x="${scaleX + 18}" y="${top + gridH}">0.0</text>`);
  parts.push(
    `<text x="${scaleX + 7}" y="${top - 8}" text-anchor="middle">accuracy</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n");
}
