/**
 * Run by backends_test.ts in a subprocess (with `DENO_WEBGPU_BACKEND` set): opens a fixture
 * (`Deno.args[0]`) on the default adapter, checks its golden logits (all 48 positions) and greedy
 * ids, and prints one line `backend-check ok|FAIL <adapter> ...`; exit 0 only when all agree.
 *
 * @module
 */

import { Engine } from "../../src/runtime/engine.ts";

const dir = Deno.args[0];
const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
const engine = await Engine.open(dir);
let ok = true;
let worst = 0;
let greedy = "";
try {
  const logits = await engine.promptLogits(golden.input_ids, 13);
  logits.forEach((row, pos) => {
    for (let i = 0; i < row.length; i++) {
      worst = Math.max(worst, Math.abs(row[i] - golden.logits[pos][i]) || 0);
      if (Number.isNaN(row[i])) worst = Infinity;
    }
  });
  const r = await engine.generate({
    promptIds: golden.greedy.prompt_ids,
    maxNewTokens: golden.greedy.new_ids.length,
    stopIds: [],
    readEvery: 5,
  });
  greedy = r.tokens.join(",");
  ok = worst <= 1e-4 && greedy === golden.greedy.new_ids.join(",");
} finally {
  engine.close();
}
console.log(
  `backend-check ${ok ? "ok" : "FAIL"} backend=${
    Deno.env.get("DENO_WEBGPU_BACKEND") ?? "default"
  } ` +
    `adapter="${engine.ctx.adapterDescription}" shader-f16=${engine.ctx.features.shaderF16} ` +
    `max-logit-diff=${worst.toExponential(2)} greedy=${greedy}`,
);
Deno.exit(ok ? 0 : 1);
