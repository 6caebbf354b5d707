/**
 * Agreement with full-cache generation as the budget shrinks: for each press and budget, the
 * share of 32 greedy tokens equal to the full cache's, on the default model and a fixed-seed
 * prompt — a Markdown table on stdout.
 *
 * Run: `deno run --allow-read --allow-env bench/agreement.ts [--model DIR] [--tokens 1024]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compileOrThrow } from "../src/plan/compile.ts";
import { Engine } from "../src/runtime/engine.ts";
import { demoPromptFor } from "../src/cli/demoPrompt.ts";
import { generateWithPlan } from "../src/runtime/planGeneration.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { model: { type: "string" }, tokens: { type: "string" }, steps: { type: "string" } },
});
const modelDir = values.model ?? new URL("../models/tiny-needle", import.meta.url).pathname;
const promptTokens = Number(values.tokens ?? 1024);
const steps = Number(values.steps ?? 32);
const budgets = [512, 256, 128, 64, 32];
const presses = [
  (k: number) => `else -> window(sink=4, recent=${k - 4})`,
  (k: number) => `else -> snap(k=${k})`,
  (k: number) => `else -> pyramid(k=${k})`,
  (k: number) => `else -> adakv(k=${k})`,
  (k: number) => `else -> knorm(k=${k})`,
  (k: number) => `else -> random(k=${k})`,
  (k: number) => `else -> h2o(heavy=${k / 2}, recent=${k / 2})`,
];

const engine = await Engine.open(modelDir);
try {
  const ids = demoPromptFor(engine.tokenizer!, modelDir, promptTokens).ids;
  const full = await generateWithPlan(engine, compileOrThrow("else -> full"), {
    promptIds: ids,
    maxNewTokens: steps,
    stopIds: [],
  });
  const lines = [
    `Agreement with the full cache: greedy tokens (of ${steps}) equal to full's, ${ids.length}-token prompt, ${
      modelDir.split("/").filter(Boolean).at(-1)
    }.`,
    "",
    `| press | ${budgets.map((b) => `k=${b}`).join(" | ")} |`,
    `|---|${budgets.map(() => "---").join("|")}|`,
  ];
  for (const press of presses) {
    const cells: string[] = [];
    let name = "";
    for (const k of budgets) {
      const policy = press(k);
      name ||= policy.replace(/^else -> /, "").replace(/\(.*$/, "");
      try {
        const r = await generateWithPlan(engine, compileOrThrow(policy), {
          promptIds: ids,
          maxNewTokens: steps,
          stopIds: [],
        });
        let same = 0;
        while (same < steps && r.result.tokens[same] === full.result.tokens[same]) same++;
        const equal = r.result.tokens.filter((t, i) => t === full.result.tokens[i]).length;
        cells.push(`${equal}/${steps} (first ${same})`);
      } catch (e) {
        cells.push(`n/a: ${(e as Error).message.slice(0, 40)}`);
      }
    }
    lines.push(`| ${name} | ${cells.join(" | ")} |`);
  }
  console.log(lines.join("\n"));
} finally {
  engine.close();
}
