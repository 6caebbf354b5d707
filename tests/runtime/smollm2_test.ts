/**
 * The real model (SmolLM2-135M-Instruct, Q4_1 GGUF) on the GPU runtime against an independent
 * reference: Hugging Face transformers loading the same GGUF in float32
 * (`tests/model/hf_gguf_reference.py`). For each prompt, 64 greedy tokens must equal the
 * reference's (up to a step where the reference's top-2 margin is within float noise), and the
 * teacher-forced logits of every step must stay within a small absolute tolerance; the largest
 * |Δlogit| is printed.
 */
import assert from "node:assert/strict";
import { pythonMissing, runPython } from "../_python.ts";
import { GREEDY, maxAbsDiff, withEngine } from "./_helpers.ts";
import { SMOLLM2_GGUF, smollm2Missing } from "./_smollm2.ts";

const SCRIPT = new URL("../model/hf_gguf_reference.py", import.meta.url).pathname;
const STEPS = 64;
/** f32 on both sides, 30 layers: differences come from summation order only. */
const TOLERANCE = 2e-3;

/** A chat turn (template tokens) and a numeric needle (SmolLM2 splits every digit). */
const PROMPTS: Record<string, string> = {
  chat: "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face" +
    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
  needle: "The grass is green. The sky is blue. The special magic number for amber-falcon is " +
    "9792168. The sun is yellow. Here we go. There and back again. " +
    "What is the special magic number for amber-falcon? The special magic number for amber-falcon is",
};

Deno.test({
  name: "smollm2: 64 greedy tokens and every step's logits match transformers on the same GGUF",
  ignore: smollm2Missing() ||
    pythonMissing(["gguf", "torch", "transformers", "numpy"], "SmolLM2 against transformers"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-smollm2-" });
    try {
      await withEngine(SMOLLM2_GGUF, async (engine) => {
        const tok = engine.tokenizer;
        assert.ok(tok, "the GGUF carries its tokenizer");
        const cases = Object.entries(PROMPTS).map(([name, text]) => ({
          name,
          ids: tok.encode(text),
          steps: STEPS,
        }));
        await Deno.writeTextFile(`${dir}/cases.json`, JSON.stringify(cases));
        // The reference runs in its own process while our decode loop runs here (independent).
        const reference = runPython(SCRIPT, [SMOLLM2_GGUF, `${dir}/cases.json`, dir]);
        const ours = new Map<string, number[]>();
        try {
          for (const c of cases) {
            const result = await engine.generate({
              promptIds: c.ids,
              maxNewTokens: STEPS,
              sampling: GREEDY,
              stopIds: [],
            });
            ours.set(c.name, result.tokens);
          }
        } finally {
          await reference; // never leave the process behind, even when decoding failed
        }
        const vocab = engine.config.vocabSize;
        for (const c of cases) {
          const ref = JSON.parse(await Deno.readTextFile(`${dir}/${c.name}.json`));
          const refLogits = new Float32Array((await Deno.readFile(`${dir}/${c.name}.f32`)).buffer);
          await t.step(`${c.name}: teacher-forced logits of ${STEPS} steps`, async () => {
            const ids = [...c.ids, ...ref.greedy_ids.slice(0, STEPS - 1)];
            const rows = (await engine.promptLogits(ids)).slice(c.ids.length - 1);
            let worst = 0;
            rows.forEach((row, i) => {
              worst = Math.max(
                worst,
                maxAbsDiff(row, refLogits.subarray(i * vocab, (i + 1) * vocab)),
              );
            });
            console.log(
              `  ${c.name}: ${c.ids.length}-token prompt, max |Δlogit| ${worst.toExponential(2)}`,
            );
            assert.ok(worst <= TOLERANCE, `max |Δlogit| ${worst}`);
          });
          await t.step(`${c.name}: ${STEPS} greedy ids through the decode loop`, () => {
            const close = (ref.margins as number[]).findIndex((m) => m < 2 * TOLERANCE);
            const upTo = close < 0 ? STEPS : close;
            assert.ok(upTo >= 16, `the reference is ambiguous already at step ${upTo}`);
            assert.deepEqual(ours.get(c.name)!.slice(0, upTo), ref.greedy_ids.slice(0, upTo));
          });
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
