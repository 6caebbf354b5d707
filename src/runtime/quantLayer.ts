/**
 * KIVI (arXiv 2402.02750) on a layer of the compacted cache: the layer's `quant` heads are packed
 * on the GPU (`quantKvCache.ts`); the others stay full precision in the same layer. What cannot
 * share a layer with it yet is refused here.
 *
 * @module
 */

import type { PlanPress } from "../plan/plan.ts";
import { quantParams } from "../plugins/quantPress.ts";
import { callText } from "../plan/explain.ts";
import { UnsupportedPolicyError } from "./executable.ts";
import type { HeadAssignment } from "./planResolver.ts";
import type { RaggedKvCache } from "./raggedKvCache.ts";

/**
 * Quantises layer `l`'s `quant` heads of `cache`, each with room for `maxEntries[h]` entries;
 * `evicts(p)` says whether a press evicts while decoding (a rolling window, H2O), which `quant`
 * cannot follow yet. Nothing happens in a layer without `quant`.
 */
export function quantizeLayer(
  cache: RaggedKvCache,
  l: number,
  row: HeadAssignment[],
  maxEntries: number[],
  evicts: (p: PlanPress) => boolean,
): void {
  const specs = row.map((a) => a.pipeline.find((p) => p.name === "quant"));
  const first = specs.find((s) => s);
  if (!first) return;
  const { kbits, vbits, group } = quantParams(first.params);
  row.forEach((a, h) => {
    const s = specs[h], q = s && quantParams(s.params);
    if (q && (q.kbits !== kbits || q.vbits !== vbits || q.group !== group)) {
      throw new UnsupportedPolicyError(
        `layer ${l}: KV heads quantised with different bits or group (${callText(first)} ` +
          `vs ${callText(s!)}) cannot share a layer yet`,
      );
    }
    const bounded = a.pipeline.find(evicts);
    if (bounded) throw new UnsupportedPolicyError(quantWithBounded(`layer ${l}`, bounded.name));
    if (a.pipeline.some((p) => p.name === "compensate")) {
      throw new UnsupportedPolicyError(
        `layer ${l}: 'compensate' cannot share a layer with 'quant' yet (quantised layers ` +
          `have no logit-bias row)`,
      );
    }
  });
  const residuals = specs.map((s) => s ? s.params.residual as number : null);
  cache.quantize(l, { kbits, vbits, group, residuals }, maxEntries);
}

/** The refusal of `quant` beside a press that evicts while decoding, `where` being its place. */
export function quantWithBounded(where: string, press: string): string {
  return `${where}: 'quant' cannot share a layer with the bounded press '${press}' yet (its ring ` +
    `would evict single tokens from packed blocks); use quant with full, snap, pyramid, adakv, ` +
    `knorm, random or window(decode=grow)`;
}
