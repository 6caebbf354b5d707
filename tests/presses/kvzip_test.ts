/**
 * KVzip on the GPU runtime against the CPU reference model: the context fed again behind the
 * repeat prompt (in chunks), each entry scored by its highest attention weight among the repeat's
 * queries, the repeat dropped, the global cut — the same entries kept, and the cache back to the
 * context before the selection.
 */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { kvzipChunks, kvzipRepeatIds, selectKvzip } from "../../src/plugins/kvzipPress.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { runPolicy } from "./_run.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("kvzip: the GPU runtime keeps what the CPU reference's reconstruction scores keep", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const c = engine.config, D = c.headDim, H = c.numHeads, Hkv = c.numKvHeads, g = H / Hkv;
    const tok = engine.tokenizer!;
    const ids = demoPrompt(tok, "question", 150, 6).ids;
    const n = ids.length, CHUNK = 64;
    // The repeat prompts as kvpress writes them (tiny-needle has no chat template: suffix "\n").
    const encode = (t: string) => tok.encode(t, { addSpecialTokens: false });
    const prompts = {
      first: encode("\n\nRepeat the previous context exactly."),
      later: encode("\n\nRepeat the part of the previous context exactly, starting with"),
      suffix: encode("\n"),
    };
    const cpu = new CpuReferenceModel(engine.weights);
    cpu.forward(ids, { logits: "last" });
    const scores = Array.from(
      { length: c.numLayers },
      () => Array.from({ length: Hkv }, () => new Float64Array(n)),
    );
    const chunks = kvzipChunks(n, CHUNK);
    chunks.forEach(([start, end], i) => {
      const repeat = kvzipRepeatIds(ids, chunks, i, prompts);
      cpu.forward(repeat, { logits: "last" });
      for (let l = 0; l < c.numLayers; l++) {
        const q = cpu.lastQueries[l];
        for (let kv = 0; kv < Hkv; kv++) {
          const keys = cpu.cache.keys(l, kv);
          for (let j = start; j < end; j++) {
            let best = 0;
            for (let r = 0; r < repeat.length; r++) {
              for (let h = kv * g; h < (kv + 1) * g; h++) {
                const dot = (row: number) => {
                  let s = 0;
                  for (let e = 0; e < D; e++) s += q[(r * H + h) * D + e] * keys[row * D + e];
                  return s / Math.sqrt(D);
                };
                const visible = [
                  ...Array.from({ length: Math.min(4, start) }, (_, x) => x),
                  ...Array.from({ length: end - start }, (_, x) => start + x),
                  ...Array.from({ length: r + 1 }, (_, x) => n + x),
                ];
                const z = visible.reduce((s, row) => s + Math.exp(dot(row)), 0);
                best = Math.max(best, Math.exp(dot(j)) / z);
              }
            }
            scores[l][kv][j] = best;
          }
          cpu.cache.keep(l, kv, Array.from({ length: n }, (_, x) => x)); // the repeat goes
        }
      }
      cpu.nextPosition = n;
    });
    const params = { k: { fraction: 0.3 }, chunk: CHUNK, layerwise: false };
    const r = await runPolicy(engine, "else -> kvzip(k=30%, chunk=64)", ids, 2);
    for (let l = 0; l < c.numLayers; l++) {
      const want = selectKvzip(
        { layer: l, promptLength: n, numKvHeads: Hkv, reconstruction: () => scores },
        params,
      );
      r.trace[l].heads.forEach((head, h) =>
        assert.deepEqual(head.kept, want[h], `layer ${l} head ${h}`)
      );
    }
    // The global cut gives layers different shares (the point of layerwise=false).
    const shares = new Set(
      r.trace.map((layer) => layer.heads.reduce((s, x) => s + x.kept.length, 0)),
    );
    assert.ok(shares.size > 1, [...shares].join(","));
  } finally {
    engine.close();
  }
});
