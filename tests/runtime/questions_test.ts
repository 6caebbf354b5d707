/**
 * The query-agnostic protocol (`src/runtime/questions.ts`): the context is compressed without
 * the question, each question is answered from the same compressed cache. Checked against the
 * float64 CPU reference model, which compresses the context with the same press's selection on
 * the context's own scores, then reads the question and answers greedily.
 */
import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { answerWithPlan, planExecutor } from "../../src/runtime/planGeneration.ts";
import { answerQuestions } from "../../src/runtime/questions.ts";
import type { PrefillState } from "../../src/runtime/generationTypes.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { withEngine } from "./_helpers.ts";

const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
const ANSWER = 12;

/** Context and questions: the golden prompt, and pieces of it in another order. */
async function inputs(): Promise<{ context: number[]; questions: number[][] }> {
  const golden = JSON.parse(await Deno.readTextFile(`${FIXTURE}/golden.json`));
  const ids: number[] = golden.input_ids;
  return {
    context: ids.slice(0, 40),
    questions: [ids.slice(40, 48), ids.slice(3, 9).reverse(), [7, 11, 13, 17, 19]],
  };
}

/**
 * CPU reference: prefill the context, apply `policy`'s first press to every head from the
 * context's own scores, then feed the question and decode greedily; a rolling window (sink,
 * recent) evicts its oldest non-sink entry before each new token once full.
 */
function cpuAnswer(
  engine: Engine,
  context: number[],
  question: number[],
  policy: string,
  roll?: { sink: number; recent: number },
): { tokens: number[]; kept: number[][][] } {
  const c = engine.config;
  const cpu = new CpuReferenceModel(engine.weights);
  cpu.forward(context, { logits: "last" });
  const press = compileOrThrow(policy).rules[0].pipeline[0];
  const kept: number[][][] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const heads = press.name === "full"
      ? Array.from({ length: c.numKvHeads }, () => context.map((_, i) => i))
      : defaultRegistry().press(press.name)!.select!(cpuLayerScores(cpu, l), press.params);
    heads.forEach((k, h) => cpu.keep(l, h, k));
    kept.push(heads);
  }
  const feed = (id: number) => {
    if (roll) {
      for (let l = 0; l < c.numLayers; l++) {
        for (let h = 0; h < c.numKvHeads; h++) {
          const n = cpu.cache.length(l, h);
          if (n >= roll.sink + roll.recent) {
            cpu.keep(l, h, Array.from({ length: n }, (_, i) => i).filter((i) => i !== roll.sink));
          }
        }
      }
    }
    return cpu.forward([id], { logits: "last" })[0];
  };
  let row: Float32Array = new Float32Array();
  for (const id of question) row = feed(id);
  const tokens = [argmax(row)];
  while (tokens.length < ANSWER) tokens.push(argmax(feed(tokens.at(-1)!)));
  return { tokens, kept };
}

Deno.test({
  name: "agnostic protocol: SnapKV selects on the context alone; answers match the CPU reference",
  ignore: sharedMissing(),
  async fn() {
    const { context, questions } = await inputs();
    await withEngine(FIXTURE, async (engine) => {
      const policy = "else -> snap(k=16, window=6, pool=3)";
      const { result, executor } = await answerWithPlan(engine, compileOrThrow(policy), {
        contextIds: context,
        questions,
        maxNewTokens: ANSWER,
      });
      const expected = questions.map((q) => cpuAnswer(engine, context, q, policy));
      // The kept set is the press's selection on the context's scores (no question in them).
      expected[0].kept.forEach((heads, l) =>
        heads.forEach((k, h) => assert.deepEqual(executor.trace[l].heads[h].kept, k, `${l}.${h}`))
      );
      result.answers.forEach((a, i) => assert.deepEqual(a.tokens, expected[i].tokens, `q${i + 1}`));
      // Each answer reads the 16 kept entries, its question and its own tokens but the last.
      result.answers.forEach((a, i) => {
        const n = 16 + questions[i].length + ANSWER - 1;
        for (const layer of a.kv.layers) assert.deepEqual(layer.lengths, [n, n]);
      });
      for (const layer of result.context.kv.layers) assert.deepEqual(layer.lengths, [16, 16]);
      assert.ok(result.context.snapshotBytes > 0);
    });
  },
});

Deno.test({
  name: "agnostic protocol: the cache is restored between questions (a rolling window evicts)",
  ignore: sharedMissing(),
  async fn() {
    const { context, questions } = await inputs();
    await withEngine(FIXTURE, async (engine) => {
      // The window rolls while each question and answer come in: without a restore, the second
      // question would see the first one's entries and lose context entries it evicted.
      const roll = { sink: 4, recent: 14 };
      const policy = `else -> window(sink=${roll.sink}, recent=${roll.recent}, decode=roll)`;
      const plan = compileOrThrow(policy);
      const all = await answerWithPlan(engine, plan, {
        contextIds: context,
        questions: [...questions, questions[0]],
        maxNewTokens: ANSWER,
      });
      questions.forEach((q, i) => {
        const cpu = cpuAnswer(engine, context, q, policy, roll);
        assert.deepEqual(all.result.answers[i].tokens, cpu.tokens, `q${i + 1}`);
      });
      assert.deepEqual(all.result.answers[3].tokens, all.result.answers[0].tokens, "q1 again");
      for (const layer of all.result.answers[1].kv.layers) {
        assert.deepEqual(layer.lengths, [18, 18]);
      }
    });
  },
});

Deno.test({
  name: "agnostic protocol with the full cache answers as the prompt context + question does",
  ignore: sharedMissing(),
  async fn() {
    const { context, questions } = await inputs();
    await withEngine(FIXTURE, async (engine) => {
      const { result } = await answerWithPlan(engine, compileOrThrow("else -> full"), {
        contextIds: context,
        questions,
        maxNewTokens: ANSWER,
      });
      for (const [i, q] of questions.entries()) {
        const cpu = cpuAnswer(engine, context, q, "else -> full");
        assert.deepEqual(result.answers[i].tokens, cpu.tokens, `q${i + 1} vs CPU`);
        const aware = await engine.generate({
          promptIds: [...context, ...q],
          maxNewTokens: ANSWER,
        });
        assert.deepEqual(result.answers[i].tokens, aware.tokens, `q${i + 1} vs one prompt`);
      }
      await assert.rejects(
        answerWithPlan(engine, compileOrThrow("else -> full"), {
          contextIds: context,
          questions: [questions[0], []],
          maxNewTokens: 4,
        }),
        /question 2 is empty/,
      );
      await assert.rejects(
        answerWithPlan(engine, compileOrThrow("else -> full"), {
          contextIds: context,
          questions: [Array(100).fill(5)],
          maxNewTokens: 4,
        }),
        /exceed the model's context of 128/,
      );
      await assert.rejects(
        answerWithPlan(engine, compileOrThrow("else -> snap(k=16, window=4) + decoding(every=8)"), {
          contextIds: context,
          questions: [questions[0]],
          maxNewTokens: 4,
        }),
        /decoding\(every=\.\.\.\) under the query-agnostic protocol is not supported yet/,
      );
    });
  },
});

Deno.test({
  name: "agnostic protocol: a question appended in prefill chunks answers as token by token does",
  ignore: sharedMissing(),
  async fn() {
    const { context, questions } = await inputs();
    await withEngine(FIXTURE, async (engine) => {
      // Counts prefill calls after the context: each is a question appended in one chunk.
      const original = engine.prefill;
      let appended = 0;
      engine.prefill = function (this: Engine, ...args: Parameters<Engine["prefill"]>) {
        if ((args[5] ?? 0) > 0) appended++;
        return original.apply(this, args);
      };
      try {
        for (const policy of ["else -> snap(k=16, window=6, pool=3)", "else -> full"]) {
          const run = (questionInChunks: boolean) =>
            answerQuestions(engine, {
              contextIds: context,
              questions,
              maxNewTokens: ANSWER,
              questionInChunks,
              ...planHooks(engine, policy),
            });
          appended = 0;
          const chunked = await run(true);
          assert.equal(appended, questions.length, `${policy}: every question in one chunk`);
          appended = 0;
          const stepped = await run(false);
          assert.equal(appended, 0);
          chunked.answers.forEach((a, i) => {
            assert.deepEqual(a.tokens, stepped.answers[i].tokens, `${policy} q${i + 1}`);
            assert.deepEqual(a.kv.layers, stepped.answers[i].kv.layers);
          });
        }
        // A rolling window acts while decoding: its questions never go in chunks.
        appended = 0;
        await answerWithPlan(engine, compileOrThrow("else -> window(sink=4, recent=14)"), {
          contextIds: context,
          questions,
          maxNewTokens: ANSWER,
        });
        assert.equal(appended, 0);
      } finally {
        engine.prefill = original;
      }
    });
  },
});

/** The hooks `answerWithPlan` gives `answerQuestions` for `policy` (a fresh executor). */
function planHooks(engine: Engine, policy: string) {
  const executor = planExecutor(engine, compileOrThrow(policy));
  return {
    observe: executor.observeRequest(40),
    afterPrefill: (state: PrefillState) => executor.apply(state),
  };
}
