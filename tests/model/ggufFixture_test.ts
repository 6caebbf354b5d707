/**
 * GGUF checkpoints against an independent reference: `gguf_fixture.py` builds random-weight
 * Llama (GQA, Q/K rows permuted as llama.cpp does), Qwen3 (per-head q/k norm) and Gemma 3
 * (sliding and global layers, GeGLU, four norms per layer, norms stored as 1 + w) models whose
 * weight matrices cover every supported ggml type, writes them with the `gguf` package, and
 * records the logits Hugging Face transformers computes when it loads those GGUF files. Our
 * loader (renaming, dequantization, un-permutation, config from metadata) must reproduce them,
 * through the CPU reference and on the GPU; the Qwen3 and Gemma 3 Hugging Face folders too.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { openModel } from "../../src/model/openModel.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import {
  answerWithPlan,
  generateWithPlan,
  planExecutor,
} from "../../src/runtime/planGeneration.ts";
import type { Plan } from "../../src/plan/plan.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuReselect } from "../presses/_cpuReselect.ts";
import {
  prefillShared,
  releaseShared,
  type SharedPrefill,
} from "../../src/runtime/sharedPrefill.ts";
import type { KvReport } from "../../src/runtime/kvReport.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { scoreTokens } from "../../src/runtime/scoreTokens.ts";
import { kvRowBytes } from "../../src/gpu/kvCache.ts";
import { PYTHON, pythonMissing, runPython } from "../_python.ts";
import { logSoftmaxAt, maxAbsDiff, range, withEngine } from "../runtime/_helpers.ts";

const SCRIPT = new URL("./gguf_fixture.py", import.meta.url).pathname;
const MODULES = ["gguf", "torch", "transformers", "numpy"];

/** Logits of CpuReferenceModel or the GPU are within this fraction of each row's range. */
const RELATIVE_TOLERANCE = 1e-4;

interface Reference {
  ids: number[];
  [model: string]: number[] | number[][];
}

function assertClose(actual: Float32Array[], expected: number[][], label: string): void {
  assert.equal(actual.length, expected.length, `${label}: rows`);
  expected.forEach((row, i) => {
    const d = maxAbsDiff(actual[i], row);
    assert.ok(
      d <= RELATIVE_TOLERANCE * range(row),
      `${label}: token ${i} max |Δlogit| ${d} (row range ${range(row)})`,
    );
  });
}

Deno.test({
  name: "gguf: synthetic Llama, Qwen3 and Gemma 3 files match transformers loading the same files",
  ignore: pythonMissing(MODULES, "GGUF fixtures against transformers"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-gguf-" });
    try {
      await runPython(SCRIPT, [dir]);
      const ref: Reference = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
      for (
        const [name, path] of [
          ["llama", `${dir}/llama.gguf`],
          ["qwen3", `${dir}/qwen3.gguf`],
          ["qwen3-hf", `${dir}/qwen3-hf`],
          ["gemma3", `${dir}/gemma3.gguf`],
          ["gemma3-hf", `${dir}/gemma3-hf`],
        ]
      ) {
        const expected = ref[name] as number[][];
        await t.step(`${name}: CPU reference`, async () => {
          const { weights } = await openModel(path);
          const cpu = new CpuReferenceModel(weights);
          assertClose(cpu.forward(ref.ids), expected, `${name} (CPU)`);
        });
        await t.step(`${name}: GPU`, async () => {
          await withEngine(path, async (engine) => {
            assertClose(await engine.promptLogits(ref.ids), expected, `${name} (GPU)`);
            if (!name.startsWith("gemma3")) return;
            // Decoding past the sliding window (5 and 4 here): greedy tokens as the CPU
            // reference's, whose logits were just checked against transformers.
            const cpu = new CpuReferenceModel(engine.weights);
            let [row] = cpu.forward(ref.ids, { logits: "last" });
            const want: number[] = [];
            for (let i = 0; i < 10; i++) {
              want.push(argmax(row));
              [row] = cpu.forward([want.at(-1)!], { logits: "last" });
            }
            const got = await engine.generate({ promptIds: ref.ids, maxNewTokens: 10 });
            assert.deepEqual(got.tokens, want, `${name}: greedy decoding`);
            // Its sliding layers held their window only: a ring of W rows, the model's own cache.
            assertSlidingRings(engine, got.kv, ref.ids.length + 9, name);
            assert.equal(got.kv.ratio, 1, `${name}: the full cache keeps all of the model's own`);
            // Prefill in chunks of 3: each sliding layer holds W + 3 rows and rolls between
            // chunks, keeping its last W − 1 entries; logits and tokens are unchanged.
            assertClose(await engine.promptLogits(ref.ids, 3), expected, `${name} (GPU, rolling)`);
            const rolled = await engine.generate({
              promptIds: ref.ids,
              maxNewTokens: 10,
              prefillChunk: 3,
            });
            assert.deepEqual(rolled.tokens, want, `${name}: greedy decoding after rolling`);
            assertSlidingRings(engine, rolled.kv, ref.ids.length + 9, `${name}, rolling`);
            assertRolledPeak(engine, rolled.kv, ref.ids.length + 10, 3, name);
            for (const chunk of [undefined, 3]) {
              await checkGemmaPolicy(engine, ref.ids, name, chunk);
              await checkGemmaQuestions(engine, ref.ids, name, chunk);
            }
            await checkGemmaChunked(engine, ref.ids, name);
            await checkGemmaDetectors(engine, ref.ids, name);
            await checkGemmaScores(engine, ref.ids, name, 5);
            await checkGemmaScores(engine, ref.ids, name, 9, 2);
            await checkGemmaScores(engine, ref.ids, name, 5, 2); // the scored tokens roll
          });
        });
      }
      // tools/compare_transformers.ts, which produced REPRODUCTION's real-model tables, on the
      // same files: it passes where the logits agree and fails at a tolerance they cannot meet.
      await t.step("tools/compare_transformers.ts", async () => {
        const ids = ref.ids.join(",");
        const ok = await compareTool([`${dir}/gemma3.gguf`, "--ids", ids, "--steps", "8"]);
        assert.equal(ok.code, 0, ok.output);
        assert.match(ok.output, /p0: 12-token prompt, 8\/8 greedy ids equal .* ok\n/);
        const strict = await compareTool(
          [`${dir}/llama.gguf`, "--ids", ids, "--steps", "4", "--tolerance", "1e-12"],
        );
        assert.equal(strict.code, 1, strict.output);
        assert.match(strict.output, /max \|Δlogit\| \S+ MISMATCH/);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs tools/compare_transformers.ts on a model with `args`; its exit code and output. */
async function compareTool(args: string[]): Promise<{ code: number; output: string }> {
  const tool = new URL("../../tools/compare_transformers.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", tool, "--model", ...args],
    env: { KVPOLICY_PYTHON: PYTHON },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
}

/**
 * After a generation of `total` cached tokens, each sliding layer of window W holds W entries per
 * head in W allocated rows (a ring), each global layer `global` entries (default `total`).
 */
function assertSlidingRings(
  engine: Engine,
  kv: KvReport,
  total: number,
  name: string,
  global = total,
): void {
  const c = engine.config;
  const row = 2 * kvRowBytes(c.headDim, engine.kvDtype);
  c.gemma3!.layerWindows.forEach((w, l) => {
    const { lengths, allocated } = kv.layers[l];
    if (w === null) {
      assert.deepEqual(lengths, Array(c.numKvHeads).fill(global), `${name}: layer ${l} entries`);
      return;
    }
    assert.ok(total > w, "the test must run past the window");
    assert.deepEqual(lengths, Array(c.numKvHeads).fill(w), `${name}: sliding layer ${l} entries`);
    assert.deepEqual(allocated, Array(c.numKvHeads).fill(w * row), `${name}: layer ${l} bytes`);
  });
}

/**
 * The KV peak of a prefill whose sliding layers rolled: the global layers' `capacity` rows, the
 * sliding layers' W + `passRows`, and one sliding layer's W rows while it is cut to its ring —
 * below what holding the prompt in every layer would take.
 */
function assertRolledPeak(
  engine: Engine,
  kv: KvReport,
  capacity: number,
  passRows: number,
  name: string,
): void {
  const c = engine.config;
  const row = 2 * kvRowBytes(c.headDim, engine.kvDtype) * c.numKvHeads;
  const windows = c.gemma3!.layerWindows;
  const held = windows.reduce((s: number, w) => s + (w === null ? capacity : w + passRows), 0);
  const cut = Math.max(...windows.map((w) => w ?? 0));
  assert.ok(kv.peakBytes <= (held + cut) * row, `${name}: peak ${kv.peakBytes} B`);
  assert.ok(kv.peakBytes < c.numLayers * capacity * row, `${name}: the peak must fall`);
}

/**
 * A policy on Gemma 3 compresses only its global layers (as kvpress does); the sliding layers
 * keep their window, the model's own cache. The CPU reference, given the kept sets of the global
 * layers, decodes the same greedy tokens: prefilled whole, in chunks of `chunk` (the sliding
 * layers roll), and from a shared prefill in such chunks.
 */
async function checkGemmaPolicy(
  engine: Engine,
  ids: number[],
  name: string,
  chunk?: number,
): Promise<void> {
  const plan = compileOrThrow("else -> snap(k=6, window=3, pool=1)");
  const shared = chunk === undefined ? undefined : await prefillShared(
    engine,
    ids,
    planExecutor(engine, plan).observeRequest(ids.length),
    chunk,
  );
  try {
    for (const from of shared ? [undefined, shared] : [undefined]) {
      const label = `${name}${chunk ? `, chunks of ${chunk}` : ""}${from ? ", shared" : ""}`;
      await checkGemmaSnap(engine, ids, plan, label, chunk, from);
    }
  } finally {
    if (shared) releaseShared(engine.ctx, shared);
  }
}

async function checkGemmaSnap(
  engine: Engine,
  ids: number[],
  plan: Plan,
  name: string,
  chunk: number | undefined,
  shared: SharedPrefill | undefined,
): Promise<void> {
  const c = engine.config;
  const { result, executor } = await generateWithPlan(
    engine,
    plan,
    { promptIds: ids, maxNewTokens: 6, prefillChunk: chunk, shared },
  );
  const cpu = new CpuReferenceModel(engine.weights);
  let [row] = cpu.forward(ids, { logits: "last" });
  const total = ids.length + 5; // the prompt and every generated token but the last
  assertSlidingRings(engine, result.kv, total, name, 6 + 5);
  c.gemma3!.layerWindows.forEach((w, l) => {
    const kept = executor.trace[l].heads.map((h) => h.kept);
    if (w !== null) {
      const last = ids.map((_, i) => i).slice(-w);
      kept.forEach((k) => assert.deepEqual(k, last, `${name}: layer ${l} kept`));
    } else {
      kept.forEach((k) => assert.equal(k.length, 6, `${name}: layer ${l} compressed`));
      kept.forEach((k, h) => cpu.keep(l, h, k));
    }
  });
  const want: number[] = [];
  for (let i = 0; i < 6; i++) {
    want.push(argmax(row));
    [row] = cpu.forward([want.at(-1)!], { logits: "last" });
  }
  assert.deepEqual(result.tokens, want, `${name}: greedy decoding under SnapKV`);
}

/**
 * Chunked prefill (`chunked(size=4)`) on Gemma 3: after each chunk SnapKV reselects on the global
 * layers, as the CPU reference does chunk by chunk, while the sliding layers keep only their last
 * W − 1 entries (`trimSlidingLayer`): the kept sets and greedy tokens equal the reference's.
 */
async function checkGemmaChunked(engine: Engine, ids: number[], name: string): Promise<void> {
  const c = engine.config, D = c.headDim, SIZE = 4, W = 2, STEPS = 5;
  const policy = `else -> snap(k=3, window=${W}, pool=1) + chunked(size=${SIZE})`;
  const cpu = new CpuReferenceModel(engine.weights);
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const snap = defaultRegistry().press("snap")!;
  let row = new Float32Array() as Float32Array;
  for (let start = 0; start < ids.length; start += SIZE) {
    const chunk = ids.slice(start, start + SIZE);
    [row] = cpu.forward(chunk, { logits: "last" });
    c.gemma3!.layerWindows.forEach((w, l) => {
      if (w !== null) return;
      const q = cpu.lastQueries[l];
      cpuReselect(cpu, l, snap, press.params, W, (j, qh) => {
        const at = ((chunk.length - W + j) * c.numHeads + qh) * D;
        return q.subarray(at, at + D);
      });
    });
  }
  const kept = (l: number, kv: number) => [...cpu.cache.positions(l, kv)];
  const prompted = c.gemma3!.layerWindows.map((_, l) =>
    Array.from({ length: c.numKvHeads }, (_, kv) => kept(l, kv))
  );
  const want = [argmax(row)];
  while (want.length < STEPS) want.push(argmax(cpu.forward([want.at(-1)!])[0]));
  const { result, executor } = await generateWithPlan(engine, compileOrThrow(policy), {
    promptIds: ids,
    maxNewTokens: STEPS,
  });
  c.gemma3!.layerWindows.forEach((w, l) => {
    if (w !== null) return;
    executor.trace[l].heads.forEach((h, kv) =>
      assert.deepEqual(h.kept, prompted[l][kv], `${name}: chunked ${l}.${kv}`)
    );
  });
  assert.deepEqual(result.tokens, want, `${name}: chunked SnapKV's tokens`);
  assertSlidingRings(engine, result.kv, ids.length + STEPS - 1, `${name}, chunked`, 3 + STEPS - 1);
  // Prefill held at most 3 + SIZE rows per global head and W + SIZE per sliding one, plus one
  // layer being rebuilt beside the others.
  const windows = c.gemma3!.layerWindows, widest = Math.max(...windows.map((w) => w ?? 0));
  const rows = windows.reduce((s: number, w) => s + (w ?? 3) + SIZE, widest + SIZE);
  const bound = rows * c.numKvHeads * 2 * kvRowBytes(D, engine.kvDtype);
  assert.ok(
    result.kv.peakBytes <= bound,
    `${name}: chunked peak ${result.kv.peakBytes} > ${bound}`,
  );
}

/**
 * `lazy` and `duo` on Gemma 3, prefilled in chunks of 3 (the sliding layers roll): they score and
 * rank the global layers only, since the sliding layers take no rule; the sliding layers keep
 * their ring.
 */
async function checkGemmaDetectors(engine: Engine, ids: number[], name: string): Promise<void> {
  const c = engine.config, windows = c.gemma3!.layerWindows;
  const globals = windows.filter((w) => w === null).length;
  const run = (policy: string) =>
    generateWithPlan(engine, compileOrThrow(policy), {
      promptIds: ids,
      maxNewTokens: 4,
      prefillChunk: 3,
    });
  for (const at of ["decode", "prefill"]) {
    const { result, executor } = await run(
      `layers lazy(threshold=0.5, at=${at}) -> window(sink=1, recent=2); else -> full`,
    );
    windows.forEach((w, l) => {
      const t = executor.trace[l];
      if (w === null) assert.ok(Number.isFinite(t.lazy_score), `${name}: layer ${l} scored`);
      else assert.equal(t.lazy_score, undefined, `${name}: sliding layer ${l} not scored`);
    });
    windows.forEach((w, l) => {
      if (w === null && executor.trace[l].lazy) return; // the lazy layers' window
      const want = w ?? ids.length + 3;
      assert.deepEqual(
        result.kv.layers[l].lengths,
        Array(c.numKvHeads).fill(want),
        `${name}: ${l}`,
      );
    });
  }
  const { executor } = await run(
    "heads duo(ratio=50%, qlen=2) -> full; else -> window(sink=1, recent=2)",
  );
  const streaming = windows.flatMap((w, l) =>
    executor.trace[l].heads.filter((h) => w === null && h.pipeline.startsWith("window"))
  );
  assert.equal(streaming.length, Math.round(globals * c.numKvHeads / 2), `${name}: duo`);
  windows.forEach((w, l) => {
    if (w !== null) executor.trace[l].heads.forEach((h) => assert.equal(h.duo_score, undefined));
  });
}

/** The CPU reference's global layers keep the sets `executor` chose (sliding layers: masked). */
function keepGlobal(cpu: CpuReferenceModel, engine: Engine, executor: PolicyExecutor): void {
  engine.config.gemma3!.layerWindows.forEach((w, l) => {
    if (w === null) executor.trace[l].heads.forEach((h, kv) => cpu.keep(l, kv, h.kept));
  });
}

/**
 * Perplexity's teacher-forced scores past the window equal the CPU reference's, for the full cache
 * and for SnapKV: the prefix of `from` tokens and then the scored ones fed in chunks of `chunk`
 * (the sliding layers roll when full), or, under a policy that acts while decoding, one token per
 * step through the sliding layers' rings.
 */
async function checkGemmaScores(
  engine: Engine,
  ids: number[],
  name: string,
  from: number,
  chunk?: number,
): Promise<void> {
  const c = engine.config;
  const policies = [
    "else -> full",
    "else -> snap(k=3, window=2, pool=1)",
    "else -> window(sink=1, recent=2)", // acts while decoding: one token per step
  ];
  for (const policy of policies) {
    const executor = new PolicyExecutor(compileOrThrow(policy), c, engine.ctx);
    const bounded = executor.actsWhileDecoding;
    const got = await scoreTokens(engine, ids, from, executor, bounded, chunk);
    const cpu = new CpuReferenceModel(engine.weights);
    let [row] = cpu.forward(ids.slice(0, from), { logits: "last" });
    keepGlobal(cpu, engine, executor);
    const want = [logSoftmaxAt(row, ids[from])];
    for (let t = from; t < ids.length - 1; t++) {
      // The window's ring: a full global head overwrites its oldest entry after the sink.
      c.gemma3!.layerWindows.forEach((w, l) => {
        for (let kv = 0; w === null && bounded && kv < c.numKvHeads; kv++) {
          const n = cpu.cache.length(l, kv);
          if (n === 3) cpu.keep(l, kv, [0, 2]);
        }
      });
      [row] = cpu.forward([ids[t]], { logits: "last" });
      want.push(logSoftmaxAt(row, ids[t + 1]));
    }
    const d = maxAbsDiff(got.logprobs, want);
    assert.ok(d < 1e-3, `${name}, ${policy}: log-probabilities differ by ${d}`);
    const kept = policy.includes("snap") ? 3 + ids.length - 1 - from : bounded ? 3 : ids.length - 1;
    assertSlidingRings(engine, got.kv, ids.length - 1, `${name}, ${policy}`, kept);
  }
}

/**
 * The query-agnostic protocol: each question goes through the sliding layers' rings one token per
 * step (in one chunk it would overwrite entries its own earlier queries need); every answer equals
 * the CPU reference's from the same compressed context.
 */
async function checkGemmaQuestions(
  engine: Engine,
  ids: number[],
  name: string,
  chunk?: number,
): Promise<void> {
  const context = ids.slice(0, 8);
  const questions = [ids.slice(8, 11), ids.slice(6, 9)];
  const { result, executor } = await answerWithPlan(
    engine,
    compileOrThrow("else -> snap(k=4, window=2, pool=1)"),
    { contextIds: context, questions, maxNewTokens: 4, prefillChunk: chunk },
  );
  questions.forEach((q, i) => {
    const cpu = new CpuReferenceModel(engine.weights);
    cpu.forward(context, { logits: "last" });
    keepGlobal(cpu, engine, executor);
    let [row] = cpu.forward(q, { logits: "last" });
    const want: number[] = [];
    for (let t = 0; t < 4; t++) {
      want.push(argmax(row));
      [row] = cpu.forward([want.at(-1)!], { logits: "last" });
    }
    assert.deepEqual(result.answers[i].tokens, want, `${name}: answer ${i}`);
  });
}
