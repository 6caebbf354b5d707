/**
 * The "what did the policy keep" view: the prompt rendered once per (layer, KV head), with the
 * tokens that head kept highlighted, plus the layer's detector scores — a self-contained HTML
 * page (no scripts) for `deno task inspect --policy P --out DIR`.
 *
 * @module
 */

import { escapeHtml } from "./escape.ts";

/** One KV head's row. */
export interface KeptHead {
  /** The pipeline that head got, e.g. `snap(k=64, ...)`, or `full`. */
  pipeline: string;
  /** Sorted kept prompt positions. */
  kept: number[];
  /** RazorAttention induction score, when computed. */
  retrievalScore?: number;
}

/** One layer. */
export interface KeptLayer {
  /** SimLayerKV score, when computed. */
  lazyScore?: number;
  /** Whether the layer was found lazy. */
  lazy?: boolean;
  /** Per KV head. */
  heads: KeptHead[];
}

/** Everything the page shows. */
export interface KeptTokensView {
  /** Page title (policy name or text). */
  title: string;
  /** The policy source. */
  policySource: string;
  /** Model folder name. */
  model: string;
  /** The prompt's tokens as display text, one string per position. */
  tokens: string[];
  /** Per layer. */
  layers: KeptLayer[];
}

function tokenSpans(tokens: string[], kept: Set<number>): string {
  return tokens.map((t, i) => {
    const text = escapeHtml(t).replace(/\n/g, "↵<br>");
    return kept.has(i)
      ? `<span class="k" title="${i}">${text}</span>`
      : `<span title="${i}">${text}</span>`;
  }).join("");
}

/**
 * The detectors' scores as an SVG grid: one row per layer, one cell per KV head coloured by its
 * RazorAttention retrieval (induction) score, plus the layer's SimLayerKV score on the right.
 * Empty when no detector ran.
 */
export function detectorScoresSvg(layers: readonly KeptLayer[]): string {
  const heads = Math.max(0, ...layers.map((l) => l.heads.length));
  const anyRetrieval = layers.some((l) => l.heads.some((h) => h.retrievalScore !== undefined));
  const anyLazy = layers.some((l) => l.lazyScore !== undefined);
  if (!anyRetrieval && !anyLazy) return "";
  const cell = 34, left = 64, top = 28;
  const width = left + heads * cell + 140;
  const height = top + layers.length * cell + 24;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" data-figure="detectors" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="16" font-size="13">retrieval score per KV head${
      anyLazy ? " · lazy score per layer" : ""
    }</text>`,
  ];
  layers.forEach((layer, l) => {
    const y = top + l * cell;
    parts.push(`<text x="${left - 8}" y="${y + cell / 2 + 4}" text-anchor="end">layer ${l}</text>`);
    layer.heads.forEach((h, k) => {
      const v = h.retrievalScore;
      const shade = v === undefined
        ? "#eee"
        : `hsl(10, 80%, ${Math.round(95 - 55 * Math.min(1, v))}%)`;
      const x = left + k * cell;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" fill="${shade}"/>`,
      );
      if (v !== undefined) {
        parts.push(
          `<text x="${x + cell / 2 - 1}" y="${y + cell / 2 + 4}" text-anchor="middle">${
            v.toFixed(2)
          }</text>`,
        );
      }
    });
    if (layer.lazyScore !== undefined) {
      parts.push(
        `<text x="${left + heads * cell + 10}" y="${y + cell / 2 + 4}">lazy ${
          layer.lazyScore.toFixed(3)
        }${layer.lazy ? " ✓" : ""}</text>`,
      );
    }
  });
  for (let k = 0; k < heads; k++) {
    parts.push(
      `<text x="${left + k * cell + cell / 2 - 1}" y="${
        top + layers.length * cell + 14
      }" text-anchor="middle">h${k}</text>`,
    );
  }
  parts.push("</svg>");
  return parts.join("\n");
}

/** Renders the page. */
export function renderKeptTokens(view: KeptTokensView): string {
  const n = view.tokens.length;
  const sections = view.layers.map((layer, l) => {
    const score = layer.lazyScore === undefined
      ? ""
      : ` · lazy score ${layer.lazyScore.toFixed(3)}${layer.lazy ? " (lazy)" : ""}`;
    const heads = layer.heads.map((h, k) => {
      const share = ((100 * h.kept.length) / Math.max(1, n)).toFixed(1);
      const retrieval = h.retrievalScore === undefined
        ? ""
        : ` · retrieval ${h.retrievalScore.toFixed(3)}`;
      return `<details${l === 0 && k === 0 ? " open" : ""}><summary>layer ${l} · KV head ${k} · ${
        escapeHtml(h.pipeline)
      } · kept ${h.kept.length}/${n} (${share}%)${retrieval}</summary><div class="t">${
        tokenSpans(view.tokens, new Set(h.kept))
      }</div></details>`;
    }).join("\n");
    return `<section><h2>layer ${l}${escapeHtml(score)}</h2>\n${heads}</section>`;
  }).join("\n");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kvpolicy: ${escapeHtml(view.title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
pre { background: #f4f4f4; padding: .8em; }
.t { font: 12px/1.6 ui-monospace, monospace; white-space: pre-wrap; background: #fafafa; padding: .6em; }
.t span { color: #bbb; }
.t span.k { color: #000; background: #ffe08a; }
summary { cursor: pointer; margin: .3em 0; }
</style></head><body>
<h1>What <code>${escapeHtml(view.title)}</code> kept</h1>
<p>Model <code>${escapeHtml(view.model)}</code>, ${n}-token prompt. Highlighted tokens stay in the
KV head's cache after prefill; grey ones were evicted.</p>
<pre>${escapeHtml(view.policySource)}</pre>
${detectorScoresSvg(view.layers)}
${sections}
</body></html>
`;
}
