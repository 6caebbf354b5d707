/**
 * Decoding-time compression (`decoding`, src/plugins/decodingPress.ts) on generations several
 * times longer than the budget, against the float64 CPU reference model running the method's
 * definition step by step: the cache stays within the budget, the kept set is the definition's
 * and the greedy tokens are the reference's.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { withEngine } from "../runtime/_helpers.ts";
import { runPolicy } from "./_run.ts";
import { cpuReselect } from "./_cpuReselect.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;

async function prompt(): Promise<number[]> {
  const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
  return golden.input_ids.slice(0, 40);
}

/**
 * CPU: prefill, apply the rule's select press (or keep all), then generate `steps` tokens; before
 * each new token, a head already holding `recent` generated entries drops its oldest one.
 */
function cpuRecent(engine: Engine, ids: number[], policy: string, recent: number, steps: number) {
  const c = engine.config;
  const cpu = new CpuReferenceModel(engine.weights);
  const [first] = cpu.forward(ids, { logits: "last" });
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const fromPrompt: number[][] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const kept = press.name === "full"
      ? Array.from({ length: c.numKvHeads }, () => ids.map((_, i) => i))
      : defaultRegistry().press(press.name)!.select!(cpuLayerScores(cpu, l), press.params);
    kept.forEach((k, h) => cpu.keep(l, h, k));
    fromPrompt.push(kept.map((k) => k.length));
  }
  const tokens = [argmax(first)];
  while (tokens.length < steps) {
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const n = cpu.cache.length(l, h);
        if (n - fromPrompt[l][h] >= recent) {
          const oldest = fromPrompt[l][h];
          cpu.keep(l, h, Array.from({ length: n }, (_, i) => i).filter((i) => i !== oldest));
        }
      }
    }
    tokens.push(argmax(cpu.forward([tokens.at(-1)!], { logits: "last" })[0]));
  }
  return { tokens, fromPrompt };
}

Deno.test({
  name: "decoding(recent=R): generated tokens ring after the prompt's kept entries (CPU reference)",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt();
    const STEPS = 30, R = 5;
    await withEngine(FIXTURE, async (engine) => {
      for (
        const policy of [
          `else -> snap(k=12, window=4, pool=3) + decoding(recent=${R})`,
          `else -> full + decoding(recent=${R})`,
        ]
      ) {
        const cpu = cpuRecent(engine, ids, policy, R, STEPS);
        const gpu = await runPolicy(engine, policy, ids, STEPS);
        assert.deepEqual(gpu.tokens, cpu.tokens, policy);
        // 29 tokens were fed back (the last one never is): the ring is full at R.
        gpu.kv.layers.forEach((layer, l) =>
          assert.deepEqual(layer.lengths, cpu.fromPrompt[l].map((n) => n + R), `${policy} ${l}`)
        );
        const rowBytes = engine.config.headDim * 4;
        const heads = engine.config.numLayers * engine.config.numKvHeads;
        const budget = (policy.includes("snap") ? 12 : ids.length) + R;
        assert.equal(gpu.kv.allocatedBytes, 2 * heads * budget * rowBytes, "allocated = budget");
      }
      // The ring must matter: without it, the tokens differ from the reference's.
      const free = await runPolicy(engine, "else -> full", ids, STEPS);
      const ring = cpuRecent(engine, ids, "else -> full", R, STEPS);
      assert.notDeepEqual(free.tokens, ring.tokens, "a 5-entry ring changes the generation");
    });
  },
});

/**
 * CPU: prefill and select, then generate `steps` tokens; after every `every` tokens fed, each
 * head's press runs again over its whole cache, scored from the last tokens' queries (kept from
 * the CPU model's own forward passes) and the cached keys, its budget the prompt's.
 */
function cpuEvery(engine: Engine, ids: number[], policy: string, every: number, steps: number) {
  const c = engine.config, D = c.headDim;
  const cpu = new CpuReferenceModel(engine.weights);
  const [first] = cpu.forward(ids, { logits: "last" });
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const schema = defaultRegistry().press(press.name)!;
  for (let l = 0; l < c.numLayers; l++) {
    schema.select!(cpuLayerScores(cpu, l), press.params).forEach((k, h) => cpu.keep(l, h, k));
  }
  const window = schema.needs?.observationWindow?.(press.params) ?? 0;
  const queries: Float64Array[][] = []; // per fed token, per layer: H × D
  const recompress = () => {
    for (let l = 0; l < c.numLayers; l++) {
      cpuReselect(
        cpu,
        l,
        schema,
        press.params,
        window,
        (j, qh) => queries[queries.length - window + j][l].subarray(qh * D, (qh + 1) * D),
      );
    }
  };
  const tokens = [argmax(first)];
  let fed = 0;
  while (tokens.length < steps) {
    const [row] = cpu.forward([tokens.at(-1)!], { logits: "last" });
    queries.push(cpu.lastQueries.map((q) => q.slice()));
    tokens.push(argmax(row));
    if (++fed % every === 0 && tokens.length < steps) recompress();
  }
  const positions = Array.from(
    { length: c.numLayers },
    (_, l) => Array.from({ length: c.numKvHeads }, (_, h) => Array.from(cpu.cache.positions(l, h))),
  );
  return { tokens, positions };
}

Deno.test({
  name: "decoding(every=N): the press re-applied every N tokens keeps what the CPU reference does",
  ignore: sharedMissing(),
  async fn() {
    const ids = await prompt();
    const STEPS = 30, N = 8, K = 12;
    await withEngine(FIXTURE, async (engine) => {
      for (
        const policy of [
          `else -> snap(k=${K}, window=4, pool=3) + decoding(every=${N})`,
          `else -> knorm(k=${K}) + decoding(every=${N})`,
          // kvpress's registry entries decoding_tova and decoding_keydiff.
          `else -> tova(k=${K}) + decoding(every=${N})`,
          `else -> keydiff(k=${K}) + decoding(every=${N})`,
        ]
      ) {
        const cpu = cpuEvery(engine, ids, policy, N, STEPS);
        const gpu = await runPolicy(engine, policy, ids, STEPS);
        assert.deepEqual(gpu.tokens, cpu.tokens, policy);
        // 29 tokens fed: recompressed after 8, 16 and 24, then 5 more.
        for (const layer of gpu.kv.layers) assert.deepEqual(layer.lengths, [K + 5, K + 5]);
        // Knorm ties exactly whenever a token repeats (RoPE keeps norms), and float rounding
        // breaks such ties either way: its kept set is compared through the tokens only.
        if (!policy.includes("knorm")) {
          assert.deepEqual(
            gpu.executor.recompressor!.keptPositions(),
            cpu.positions.map((l) => l.map((p) => p.slice(0, K))),
            `${policy}: kept positions after the last run`,
          );
        }
        assert.equal(gpu.executor.recompressor!.runs, 3);
      }
      // Without recompression the generation differs: the test can tell.
      const once = cpuEvery(engine, ids, "else -> snap(k=12, window=4, pool=3)", 1000, STEPS);
      const again = cpuEvery(engine, ids, `else -> snap(k=12, window=4, pool=3)`, N, STEPS);
      assert.notDeepEqual(once.positions, again.positions);
    });
  },
});
