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
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { RaggedKvCache } from "../../src/runtime/raggedKvCache.ts";
import { reconstructionRoom, reconstructionScores } from "../../src/runtime/reconstruction.ts";
import { releaseActivations } from "../../src/runtime/forwardPass.ts";
import { withRandomGemma } from "../runtime/_checkpoint.ts";
import { maxAbsDiff, randomInt, seededRandom } from "../runtime/_helpers.ts";

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

Deno.test("kvzip on Gemma 3: sliding layers roll through prefill and the repeat passes, unscored; the global layers' scores are unchanged", async () => {
  await withRandomGemma(
    41,
    3,
    { layerTypes: ["sliding", "full", "sliding"], window: 4 },
    async (dir) => {
      const engine = await Engine.open(dir);
      try {
        const { ctx, config: c } = engine;
        const rand = seededRandom(42);
        const ids = Array.from({ length: 30 }, () => randomInt(rand, 3, 60));
        const N = ids.length, CHUNK = 8;
        const prompts = { first: [5, 6, 7], later: [8, 9], suffix: [10] };
        const room = reconstructionRoom(N, CHUNK, prompts);
        const sources = (pass: number) => ({
          prompts: () => prompts,
          forward: async (cache: RaggedKvCache, x: number[], first: number) => {
            releaseActivations(
              ctx,
              (await engine.prefill(cache, x, pass, "last", undefined, first)).acts,
            );
          },
        });
        const run = async (pass: number, passRows?: number) => {
          const cache = new RaggedKvCache(ctx, c, N + room, engine.kvDtype, passRows);
          try {
            releaseActivations(ctx, (await engine.prefill(cache, ids, pass, "last")).acts);
            const scores = await reconstructionScores(ctx, c, cache, ids, CHUNK, sources(pass));
            const lengths = await cache.lengths();
            const offsets = [...cache.slidingOffset];
            const keys = await Promise.all(
              c.gemma3!.layerWindows.map((_, l) =>
                cache.readKeys(l, 1, lengths[l][1]).then((k) => k.slice())
              ),
            );
            return { scores, lengths, offsets, keys, peak: cache.peakBytes };
          } finally {
            cache.release();
          }
        };
        const whole = await run(512); // every layer holds the whole context
        const rolled = await run(3, 3); // sliding layers: W + 3 rows, rolling through the repeats
        c.gemma3!.layerWindows.forEach((w, l) => {
          if (w === null) {
            rolled.scores[l].forEach((head, h) =>
              head.forEach((s, j) =>
                assert.ok(Math.abs(s - whole.scores[l][h][j]) <= 1e-5, `layer ${l} head ${h} ${j}`)
              )
            );
            assert.deepEqual(rolled.lengths[l], [N, N]);
            return;
          }
          rolled.scores[l].forEach((head) => assert.equal(head.length, 0, `sliding ${l} unscored`));
          // Back to the context's last W entries, in order, in both runs, with the same keys.
          for (const run of [rolled, whole]) {
            assert.equal(run.offsets[l], N - w, `sliding layer ${l}: first position`);
            assert.deepEqual(run.lengths[l], [w, w]);
          }
          assert.ok(maxAbsDiff(rolled.keys[l], whole.keys[l]) < 1e-4, `sliding layer ${l} keys`);
        });
        assert.ok(rolled.peak < whole.peak, `peak ${rolled.peak} vs ${whole.peak}`);
        // Through a policy: prefill rolls, the repeats roll through the sliding layers while
        // their last W context entries wait aside, the press cuts the global layer and the sliding
        // layers become rings of their last W entries; the kept sets and tokens are those of a
        // prefill that never rolls.
        const generate = async (pass: number) => {
          const executor = new PolicyExecutor(
            compileOrThrow("else -> kvzip(k=25%, chunk=16)"),
            c,
            ctx,
            undefined,
            {
              retrievalScores: () => Promise.reject(new Error("not used")),
              reconstruction: sources(pass),
            },
          );
          const r = await engine.generate({
            promptIds: ids,
            maxNewTokens: 4,
            prefillChunk: pass,
            observe: executor.observeRequest(N),
            afterPrefill: (state) => executor.apply(state),
            prefillRoom: (n) => executor.prefillRoom(n),
          });
          return { r, kept: executor.trace.map((t) => t.heads.map((h) => h.kept)) };
        };
        const once = await generate(512), rolling = await generate(3);
        assert.deepEqual(rolling.kept, once.kept);
        assert.deepEqual(rolling.r.tokens, once.r.tokens);
        c.gemma3!.layerWindows.forEach((w, l) => {
          if (w !== null) assert.deepEqual(rolling.r.kv.layers[l].lengths, [w, w], `ring ${l}`);
        });
      } finally {
        engine.close();
      }
    },
  );
});
