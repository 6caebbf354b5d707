/**
 * GPU runtime vs the golden outputs of `models/tiny-needle` (`shared/golden/tiny-needle`, see its
 * README): tokenizer ids, last-prompt logits, greedy ids through the decode loop, and — through
 * a second path, teacher-forced prefill of prompt + golden ids — the top-20 logits of every
 * greedy step. The README's float32 tolerance is 2e-3 absolute; `short` has a 0.002 top-2
 * margin at step 12, so its ids are only compared up to a step whose margin is that small.
 */
import assert from "node:assert/strict";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { GREEDY, maxAbsDiff, withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;
const TOLERANCE = 2e-3;

/** The parts of a golden file these tests read. */
interface NeedleGolden {
  prompt_text: string;
  prompt_ids: number[];
  last_prompt_logits: number[];
  greedy_ids: number[];
  steps: { step: number; top_ids: number[]; top_logits: number[] }[];
}

/** Reads `shared/golden/tiny-needle/<name>.json`. */
async function readGolden(name: string): Promise<NeedleGolden> {
  return JSON.parse(await Deno.readTextFile(`${SHARED_DIR}/golden/tiny-needle/${name}.json`));
}

/**
 * Largest difference between the GPU logits of each step and the golden top-20 logits of that
 * step (teacher-forced, so every step sees the golden history).
 */
function topLogitError(rows: Float32Array[], golden: NeedleGolden): number {
  let worst = 0;
  golden.steps.forEach((s, i) => {
    const actual = s.top_ids.map((id) => rows[i][id]);
    worst = Math.max(worst, maxAbsDiff(actual, s.top_logits));
  });
  return worst;
}

Deno.test({
  name: "runtime: tiny-needle matches shared/golden/tiny-needle (short, needle300, needle1500)",
  ignore: sharedMissing(),
  async fn(t) {
    const cases = await Promise.all(["short", "needle300", "needle1500"].map(readGolden));
    await withEngine(MODEL_DIR, async (engine) => {
      const tok = engine.tokenizer;
      assert.ok(tok, "models/tiny-needle ships a tokenizer.json");
      for (const [i, name] of ["short", "needle300", "needle1500"].entries()) {
        const g = cases[i];
        const N = g.prompt_ids.length;
        await t.step(`${name}: tokenizer ids`, () => {
          assert.deepEqual(tok.encode(g.prompt_text), g.prompt_ids);
        });
        await t.step(`${name}: teacher-forced logits (last prompt + 23 steps)`, async () => {
          // Rows N-1 .. N+22 are the distributions of greedy steps 0 .. 23.
          const ids = [...g.prompt_ids, ...g.greedy_ids.slice(0, g.steps.length - 1)];
          const logits = await engine.promptLogits(ids, 97);
          const rows = logits.slice(N - 1);
          assert.equal(rows.length, g.steps.length);
          if (name !== "needle1500") {
            const d = maxAbsDiff(rows[0], g.last_prompt_logits);
            assert.ok(d <= TOLERANCE, `last prompt logits: max abs diff ${d}`);
          }
          const top = topLogitError(rows, g);
          assert.ok(top <= TOLERANCE, `top-20 logits of the greedy steps: max abs diff ${top}`);
        });
        await t.step(`${name}: 24 greedy ids through the decode loop`, async () => {
          const result = await engine.generate({
            promptIds: g.prompt_ids,
            maxNewTokens: g.greedy_ids.length,
            sampling: GREEDY,
            stopIds: [],
            readEvery: 7,
            prefillChunk: 128,
          });
          assert.equal(result.tokens.length, g.greedy_ids.length);
          // Ids must agree up to the first step whose top-2 margin is within float noise.
          const close = g.steps.findIndex((s) => s.top_logits[0] - s.top_logits[1] < 2 * TOLERANCE);
          if (name !== "short") assert.equal(close, -1, "README: margins ≥ 0.07 here");
          const n = close === -1 ? g.greedy_ids.length : close;
          assert.ok(n >= 12, `ids compared over ${n} steps`);
          assert.deepEqual(result.tokens.slice(0, n), g.greedy_ids.slice(0, n));
        });
      }
    });
  },
});
