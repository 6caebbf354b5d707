/**
 * SnapKV-family presses read the observation window as GPU-summed votes (`windowVotesOnly`);
 * the same press reading the whole window back (votes summed on the CPU) must keep exactly the
 * same entries, and the votes must agree to float32 rounding.
 */
import assert from "node:assert/strict";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import type { LayerScoresInput } from "../../src/plugins/press.ts";
import type { PressSchema } from "../../src/plugins/schema.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { PolicyExecutor } from "../../src/runtime/policyExecutor.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("window votes: GPU-summed and CPU-summed windows keep the same entries (snap, pyramid, adakv)", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const ids = demoPrompt(engine.tokenizer!, "question", 700, 2).ids;
    for (const name of ["snap", "pyramid", "adakv"]) {
      const registry = defaultRegistry();
      const gpu = registry.press(name)!;
      assert.ok(gpu.needs?.windowVotesOnly, `${name} declares windowVotesOnly`);
      // The same press without the declaration: the executor reads the whole window back.
      const seen: { gpu?: Float32Array[]; cpu?: Float32Array[] } = {};
      const spy = (tag: "gpu" | "cpu", schema: PressSchema): PressSchema => ({
        ...schema,
        name: `${name}_${tag}`,
        needs: tag === "gpu"
          ? schema.needs
          : { observationWindow: schema.needs!.observationWindow },
        select: (input: LayerScoresInput, params) => {
          if (input.layer === 3) seen[tag] = input.windowVotes!(32);
          if (tag === "gpu") {
            assert.throws(() => input.windowAttention(32), /not read back/);
          }
          return schema.select!(input, params);
        },
      });
      registry.register(spy("gpu", gpu));
      registry.register(spy("cpu", gpu));
      const kept: Record<string, number[][][]> = {};
      for (const tag of ["gpu", "cpu"]) {
        const plan = compileOrThrow(`else -> ${name}_${tag}(k=96)`, "<test>", registry);
        const executor = new PolicyExecutor(plan, engine.config, engine.ctx, registry);
        await engine.generate({
          promptIds: ids,
          maxNewTokens: 1,
          observe: executor.observeRequest(),
          afterPrefill: (state) => executor.apply(state),
        });
        kept[tag] = executor.trace.map((layer) => layer.heads.map((h) => h.kept));
      }
      assert.deepEqual(kept.gpu, kept.cpu, `${name}: kept entries`);
      assert.ok(kept.gpu[0][0].length < ids.length, `${name} compressed`);
      for (const [h, votes] of seen.gpu!.entries()) {
        const cpu = seen.cpu![h];
        for (let j = 0; j < votes.length; j++) {
          assert.ok(
            Math.abs(votes[j] - cpu[j]) <= 1e-6 * Math.max(1, cpu[j]),
            `${name} h${h} j${j}`,
          );
        }
      }
    }
  } finally {
    engine.close();
  }
});
