/**
 * `compensate` (RazorAttention) on the real runtime: decoding over a cache whose dropped entries
 * were collapsed into one compensation row (GPU means, logit bias in the cache meta) matches the
 * CPU reference with `compensationToken()` inserted as a biased entry — for a bounded window
 * (the token is an extra sink the ring never overwrites; with `decode=fold` every entry the window
 * evicts while decoding joins it, the CPU side folding them in float64; with `decode=fixed` they
 * are lost) and an unbounded select, with `weight=count` and `weight=plain`. Then
 * `policies/razor.kvp` runs end to end.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { compensationToken } from "../../src/plugins/compensatePress.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { maxAbsDiff, withEngine } from "../runtime/_helpers.ts";
import { runPolicy, teacherForced } from "./_run.ts";

const TOLERANCE = 1e-4;
const FED = 5;
const SINK = 2, RECENT = 10;

/** CPU: prefill, select, insert the compensation tokens, greedy-decode (window ring emulated). */
function cpuRun(engine: Engine, prompt: number[], policy: string) {
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const comp = compileOrThrow(policy).rules[0].pipeline[1].params;
  const weight = comp.weight as "count" | "plain";
  const c = engine.config, D = c.headDim;
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(prompt, { logits: "last" });
  // Per (layer, head): float64 sums of every dropped key and value, and their count.
  const folded: { k: Float64Array; v: Float64Array; n: number }[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const kept = defaultRegistry().press(press.name)!.select!(cpuLayerScores(cpu, l), press.params);
    for (let h = 0; h < c.numKvHeads; h++) {
      const sums = { k: new Float64Array(D), v: new Float64Array(D), n: 0 };
      const keys = cpu.cache.keys(l, h), values = cpu.cache.values(l, h);
      for (let i = 0; i < prompt.length; i++) {
        if (kept[h].includes(i)) continue;
        for (let d = 0; d < D; d++) {
          sums.k[d] += keys[i * D + d];
          sums.v[d] += values[i * D + d];
        }
        sums.n++;
      }
      folded.push(sums);
      const token = compensationToken(
        cpu.cache.keys(l, h),
        cpu.cache.values(l, h),
        c.headDim,
        kept[h],
        weight,
      );
      cpu.keep(l, h, kept[h]);
      assert.ok(token, "entries were dropped");
      cpu.cache.append(l, h, Float64Array.from(token.key), Float64Array.from(token.value), -1);
      cpu.setLogitBias(l, h, kept[h].length, token.logBias);
    }
  }
  const ids = [argmax(row)];
  const logits: Float32Array[] = [];
  while (ids.length <= FED) {
    if (press.name === "window") {
      // The GPU ring overwrites the oldest window entry before attending (sink and token stay).
      for (let l = 0; l < c.numLayers; l++) {
        for (let h = 0; h < c.numKvHeads; h++) {
          const positions = cpu.cache.positions(l, h);
          if (positions.length < SINK + 1 + RECENT) continue;
          const order = Array.from(positions.keys()).sort((a, b) => positions[a] - positions[b]);
          const oldest = order[SINK + 1];
          if (comp.decode === "fold") {
            // The evicted entry joins the compensation token (the entry at position −1).
            const f = folded[l * c.numKvHeads + h], token = order[0];
            const keys = cpu.cache.keys(l, h), values = cpu.cache.values(l, h);
            for (let d = 0; d < D; d++) {
              f.k[d] += keys[oldest * D + d];
              f.v[d] += values[oldest * D + d];
            }
            f.n++;
            for (let d = 0; d < D; d++) {
              keys[token * D + d] = f.k[d] / f.n;
              values[token * D + d] = f.v[d] / f.n;
            }
            cpu.setLogitBias(l, h, token, weight === "count" ? Math.log(f.n) : 0);
          }
          cpu.keep(l, h, Array.from(positions.keys()).filter((i) => i !== oldest));
        }
      }
    }
    [row] = cpu.forward([ids.at(-1)!]);
    logits.push(row);
    ids.push(argmax(row));
  }
  return { ids, logits };
}

Deno.test({
  name: "compensate: decode logits over the compensation row match the CPU reference",
  ignore: sharedMissing(),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
    await withEngine(dir, async (engine) => {
      const prompt = golden.input_ids.slice(0, 40);
      const c = engine.config;
      const selects = [
        [`window(sink=${SINK}, recent=${RECENT})`, "fold"],
        [`window(sink=${SINK}, recent=${RECENT})`, "fixed"],
        ["random(k=12, seed=3)", "fold"],
      ];
      const folds: Float32Array[] = [];
      for (const [select, decode] of selects) {
        const runs: Float32Array[] = [];
        for (const weight of ["count", "plain"]) {
          const policy = `else -> ${select} + compensate(weight=${weight}, decode=${decode})`;
          const cpu = cpuRun(engine, prompt, policy);
          const gpu = await teacherForced(engine, prompt, policy, cpu.ids.slice(0, -1));
          for (const layer of gpu.trace) {
            for (const h of layer.heads) assert.equal(h.compensated, prompt.length - h.kept.length);
          }
          cpu.logits.forEach((row, i) => {
            const d = maxAbsDiff(gpu.logits[i], row);
            assert.ok(d <= TOLERANCE, `${policy}, step ${i + 1}: max abs logit diff ${d}`);
          });
          const held = select.startsWith("window") ? SINK + RECENT + 1 : 12 + 1 + FED;
          for (const lengths of gpu.lengths) {
            assert.deepEqual(lengths, Array(c.numKvHeads).fill(held));
          }
          runs.push(cpu.logits[0]);
          if (select.startsWith("window") && weight === "count") folds.push(cpu.logits.at(-1)!);
        }
        // The bias matters, so this test would see it missing.
        assert.ok(maxAbsDiff(runs[0], runs[1]) > 50 * TOLERANCE, `${select}: count vs plain`);
      }
      // Folding changes what the window's heads attend to, so this test would see it missing.
      assert.ok(maxAbsDiff(folds[0], folds[1]) > 50 * TOLERANCE, "fold vs fixed");
    });
  },
});

for (const model of ["tiny-needle", "planted-needle"]) {
  Deno.test(`compensate: policies/razor.kvp runs on ${model}, the compensation row counted`, async () => {
    const path = new URL(`../../models/${model}`, import.meta.url).pathname;
    const policy = await Deno.readTextFile(new URL("../../policies/razor.kvp", import.meta.url));
    await withEngine(path, async (engine) => {
      const c = engine.config;
      const ids = demoPrompt(engine.tokenizer!, "question", 400, 1).ids;
      const maxNew = 6, fed = maxNew - 1;
      const r = await runPolicy(engine, policy, ids, maxNew);
      assert.equal(r.tokens.length, maxNew);
      let compensated = 0, full = 0;
      r.trace.forEach((layer, l) =>
        layer.heads.forEach((h, kv) => {
          const length = r.kv.layers[l].lengths[kv];
          if (h.compensated) {
            compensated++;
            assert.equal(h.kept.length, 4 + 251);
            assert.equal(h.compensated, ids.length - 255);
            assert.equal(length, 4 + 1 + 251, "sink + compensation row + window");
          } else {
            full++;
            assert.equal(length, ids.length + fed);
          }
        })
      );
      assert.ok(compensated > 0 && full > 0, `${compensated} compensated, ${full} full heads`);
      const row = 2 * c.headDim * 4;
      assert.equal(r.kv.keptBytes, (compensated * 256 + full * (ids.length + fed)) * row);
    });
  });
}
