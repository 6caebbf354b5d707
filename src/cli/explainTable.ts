/**
 * `check --explain --model M` (a Hugging Face folder, a GGUF file or a folder holding one):
 * resolves a plan on a model and a prompt — runs its detectors, assigns every (layer, KV head)
 * by first match — and prints the layer × head table: which rule and press each head gets, with
 * its budget, and what the detectors found.
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import { missingTokenizerText } from "../model/openModel.ts";
import type { Plan } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { formatParamValue } from "../plugins/schema.ts";
import { Engine } from "../runtime/engine.ts";
import { demoPromptFor } from "./demoPrompt.ts";
import { generateWithPlan } from "../runtime/planGeneration.ts";
import { UserError } from "./errors.ts";
import { readPromptText } from "./prompt.ts";

/** Runs the plan's detectors on the model at `modelDir` (any `--model` form); the table as text. */
export async function explainOnModel(
  plan: Plan,
  registry: PluginRegistry,
  modelDir: string,
  prompt: { text?: string; file?: string },
): Promise<string> {
  const engine = await Engine.open(modelDir, { onCompile: compileProgress() });
  try {
    const tok = engine.tokenizer;
    if (!tok) {
      throw new UserError(
        `${modelDir} has ${
          missingTokenizerText(engine.weights.dir)
        }; --explain needs a text prompt`,
      );
    }
    const ids = prompt.text !== undefined || prompt.file !== undefined
      ? tok.encode(readPromptText(prompt.text, prompt.file))
      : demoPromptFor(tok, modelDir).ids;
    const { executor } = await generateWithPlan(
      engine,
      plan,
      { promptIds: ids, maxNewTokens: 2, stopIds: [] },
      registry,
    );
    const c = engine.config;
    const lines = [
      `${modelDir}: ${c.numLayers} layers × ${c.numKvHeads} KV heads, ${ids.length}-token prompt`,
      "",
    ];
    const header = [
      "layer",
      "detectors",
      ...Array.from({ length: c.numKvHeads }, (_, h) => `KV head ${h}`),
    ];
    const rows: string[][] = [header];
    executor.assignments.forEach((row, l) => {
      const t = executor.trace[l];
      const found = t.lazy_score === undefined
        ? ""
        : `lazy ${t.lazy_score.toFixed(2)}${t.lazy ? " ✓" : ""}`;
      rows.push([
        String(l),
        found,
        ...row.map((a, h) => {
          const press = a.pipeline.map((p) => {
            const k = p.params.k ?? p.params.recent;
            return k === undefined ? p.name : `${p.name} ${formatParamValue(k)}`;
          }).join("+") || "full";
          const rule = a.rule === null ? "—" : `r${a.rule + 1}`;
          const kept = t.heads[h]?.kept.length;
          const r = (t.heads[h] as { retrieval_score?: number } | undefined)?.retrieval_score;
          return `${rule} ${press} → ${kept}${r === undefined ? "" : ` (retr ${r.toFixed(2)})`}`;
        }),
      ]);
    });
    const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) {
      lines.push(r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd());
    }
    lines.push(
      "",
      "rN = rule N of the policy (— = no rule: full cache); → entries kept per head after prefill.",
    );
    plan.rules.forEach((r, i) => lines.push(`r${i + 1}: ${r.text}`));
    return lines.join("\n");
  } finally {
    engine.close();
  }
}
