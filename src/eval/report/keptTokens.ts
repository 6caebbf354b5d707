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
${sections}
</body></html>
`;
}
