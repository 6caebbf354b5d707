/**
 * The CPU side of re-applied selection (`decoding(every=N)`, `chunked`): a select press run over a
 * CPU reference model's whole cache of one layer, scored in float64 by the queries of its last
 * `window` entries (causal: each sees the entries up to its own), at the model's attention scale.
 * @module
 */
import type { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { attentionScale } from "../../src/model/attentionScale.ts";
import type { ParamValue, PressSchema } from "../../src/plugins/schema.ts";

/**
 * Keeps, in every KV head of `cpu`'s layer `l`, what `schema.select` picks from the head's current
 * entries; `query(j, qh)` is the post-RoPE query of query head `qh` of the j-th of the last
 * `window` entries.
 */
export function cpuReselect(
  cpu: CpuReferenceModel,
  l: number,
  schema: PressSchema,
  params: Record<string, ParamValue>,
  window: number,
  query: (j: number, qh: number) => ArrayLike<number>,
): void {
  const c = cpu.config, D = c.headDim, g = c.numHeads / c.numKvHeads, scale = attentionScale(c);
  const n = cpu.cache.length(l, 0);
  const rows = Array.from({ length: c.numHeads }, () => new Float32Array(window * n));
  for (let qh = 0; qh < c.numHeads; qh++) {
    const keys = cpu.cache.keys(l, Math.floor(qh / g));
    for (let j = 0; j < window; j++) {
      const q = query(j, qh);
      const e = Array.from({ length: n - window + j + 1 }, (_, i) => {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[d] * keys[i * D + d];
        return dot * scale;
      });
      const max = Math.max(...e);
      const sum = e.reduce((s, x) => s + Math.exp(x - max), 0);
      e.forEach((x, i) => rows[qh][j * n + i] = Math.exp(x - max) / sum);
    }
  }
  const kept = schema.select!({
    layer: l,
    numLayers: c.numLayers,
    promptLength: n,
    numKvHeads: c.numKvHeads,
    groupSize: g,
    headDim: D,
    windowAttention: (w) => rows.map((r) => r.subarray((window - w) * n)),
    attentionColumnSums: () => [],
    keys: (h) => Float32Array.from(cpu.cache.keys(l, h)),
  }, params);
  kept.forEach((k, h) => cpu.keep(l, h, k));
}
