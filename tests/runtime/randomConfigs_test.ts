/**
 * Property tests of the GPU runtime against the CPU reference on random small checkpoints
 * (seeded): hidden sizes that are not multiples of 4, intermediate and vocabulary sizes of any
 * parity, F32/F16/BF16 storage, GQA ratios 1/2/4 (and MQA), Qwen2 q/k/v biases, tied embeddings,
 * odd prompt lengths and prefill chunks. Logits at every prompt position must agree within 1e-4
 * of the logit range (f32 compute vs float64), and greedy decoding must give the same ids where
 * the reference's top-2 margin is clear of that noise. Shapes the GPU kernels cannot run
 * (head_dim not a multiple of 4) must be refused by `Engine.open` with a clear ModelError.
 */
import assert from "node:assert/strict";
import { ModelError } from "../../src/model/errors.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { type FileDType, type RandomModelSpec, writeRandomModel } from "./_checkpoint.ts";
import { assertMatchesCpuReference } from "./_cpuCompare.ts";
import { randomInt, seededRandom, withEngine } from "./_helpers.ts";

/** One case: the model's fixed features; sizes, prompt and chunk are drawn from the seed. */
interface Case {
  seed: number;
  arch: RandomModelSpec["arch"];
  dtype: FileDType;
  /** Query heads per KV head. */
  ratio: number;
  tied: boolean;
}

const CASES: Case[] = [
  { seed: 11, arch: "llama", dtype: "F32", ratio: 1, tied: false },
  { seed: 12, arch: "llama", dtype: "F16", ratio: 2, tied: true },
  { seed: 13, arch: "qwen2", dtype: "BF16", ratio: 4, tied: true },
  { seed: 14, arch: "qwen2", dtype: "F32", ratio: 2, tied: false },
  { seed: 15, arch: "mistral", dtype: "BF16", ratio: 1, tied: false },
  { seed: 16, arch: "mistral", dtype: "F16", ratio: 4, tied: false },
  { seed: 17, arch: "llama", dtype: "BF16", ratio: 2, tied: false },
  { seed: 18, arch: "qwen2", dtype: "F16", ratio: 1, tied: true },
];

/** Draws the sizes of a case: hidden sizes 9..70 (any residue mod 4), head_dim 4..24. */
function drawSpec(c: Case): { spec: RandomModelSpec; promptLength: number; chunk: number } {
  const rand = seededRandom(c.seed);
  const kvHeads = randomInt(rand, 1, 2);
  const heads = kvHeads * c.ratio;
  const headDim = 4 * randomInt(rand, 1, 6);
  // Odd-ish hidden sizes; every third case uses hidden = heads × head_dim (no head_dim key).
  const hidden = c.seed % 3 === 0 ? heads * headDim : randomInt(rand, 9, 70);
  const spec: RandomModelSpec = {
    arch: c.arch,
    dtype: c.dtype,
    hidden,
    heads,
    kvHeads,
    headDim,
    inter: randomInt(rand, 5, 97),
    vocab: randomInt(rand, 16, 301),
    layers: randomInt(rand, 1, 3),
    tied: c.tied,
    seed: c.seed * 1000 + 1,
  };
  return {
    spec,
    promptLength: 2 * randomInt(rand, 3, 24) + 1,
    chunk: 2 * randomInt(rand, 0, 8) + 1,
  };
}

Deno.test("runtime: random checkpoints — GPU logits and greedy ids equal the CPU reference", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "kvpolicy-random-" });
  try {
    for (const c of CASES) {
      const { spec, promptLength, chunk } = drawSpec(c);
      const label =
        `${c.arch} ${c.dtype} hidden ${spec.hidden} heads ${spec.heads}/${spec.kvHeads}` +
        ` hd ${spec.headDim} inter ${spec.inter} vocab ${spec.vocab} layers ${spec.layers}` +
        `${c.tied ? " tied" : ""}, prompt ${promptLength}, chunk ${chunk}`;
      await t.step(label, async () => {
        const dir = `${root}/case-${c.seed}`;
        await Deno.mkdir(dir);
        await writeRandomModel(dir, spec);
        const rand = seededRandom(c.seed + 99);
        const prompt = Array.from(
          { length: promptLength },
          () => randomInt(rand, 0, spec.vocab - 1),
        );
        await withEngine(dir, async (engine) => {
          await assertMatchesCpuReference(engine, prompt, { steps: 6, chunk, readEvery: 2 });
        });
      });
    }

    await t.step("head_dim not a multiple of 4 is refused with a clear ModelError", async () => {
      for (const headDim of [6, 2]) {
        const dir = `${root}/unsupported-${headDim}`;
        await Deno.mkdir(dir);
        await writeRandomModel(dir, {
          arch: "llama",
          dtype: "F32",
          hidden: 24,
          heads: 2,
          kvHeads: 1,
          headDim,
          inter: 16,
          vocab: 32,
          layers: 1,
          tied: false,
          seed: headDim,
        });
        await assert.rejects(
          () => Engine.open(dir),
          (e: unknown) => {
            assert.ok(e instanceof ModelError, `a ModelError, got ${e}`);
            assert.match(e.message, new RegExp(`head_dim ${headDim} .*multiple of 4`));
            return true;
          },
        );
      }
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
