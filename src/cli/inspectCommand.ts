/**
 * `deno task inspect [--policy P] [--model M] [--prompt T | --prompt-file F] [--out DIR]`:
 * runs a policy on a prompt and shows what it kept — the detectors' scores per layer and head on
 * the terminal, and with `--out` an HTML page of the prompt with each KV head's kept tokens
 * highlighted, plus the trace as JSON.
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import { renderKeptTokens } from "../eval/report/keptTokens.ts";
import { missingTokenizerText } from "../model/openModel.ts";
import { Engine } from "../runtime/engine.ts";
import { demoPromptFor } from "./demoPrompt.ts";
import { generateWithPlan } from "../runtime/planGeneration.ts";
import { parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { prepareOutputDir, writeOutput } from "./outputs.ts";
import { loadPolicy } from "./policyLoader.ts";
import { DEFAULT_MODEL_DIR, DEMO_MODEL_DIR, readPromptText } from "./prompt.ts";

/** Usage text of `inspect`. */
export const INSPECT_USAGE = `usage: deno task inspect [--policy P] [--model M]
                         [--prompt TEXT | --prompt-file F] [--out DIR] [--allow-plugins]
  --model M  a Hugging Face model folder, a .gguf file or a folder holding one
  without a prompt: the needle demo prompt on models/planted-needle`;

/** Runs `inspect`; returns the exit code. */
export async function inspectCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags("inspect", args, {
    policy: { type: "string" },
    model: { type: "string" },
    prompt: { type: "string" },
    "prompt-file": { type: "string" },
    out: { type: "string" },
    "allow-plugins": { type: "boolean" },
    plugin: { type: "string", multiple: true },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) {
    console.log(INSPECT_USAGE);
    return 0;
  }
  const policyArg = (v.policy as string | undefined) ??
    "layers lazy(recent=64) -> window(sink=4, recent=64); else -> snap(k=64, pool=21)";
  const { source, plan, registry } = await loadPolicy(policyArg, {
    allowPlugins: v["allow-plugins"] === true,
    plugins: (v.plugin as string[] | undefined) ?? [],
  });
  if (typeof v.out === "string") {
    prepareOutputDir("inspect", v.out, ["kept.html", "trace.json"], "out");
  }
  const hasPrompt = v.prompt !== undefined || v["prompt-file"] !== undefined;
  const modelDir = (v.model as string | undefined) ??
    (hasPrompt ? DEFAULT_MODEL_DIR : DEMO_MODEL_DIR);
  const engine = await Engine.open(modelDir, { onCompile: compileProgress() });
  try {
    const tok = engine.tokenizer;
    if (!tok) {
      throw new UserError(
        `${modelDir} has ${missingTokenizerText(engine.weights.dir)}; inspect shows text`,
      );
    }
    const ids = hasPrompt
      ? tok.encode(
        readPromptText(v.prompt as string | undefined, v["prompt-file"] as string | undefined),
      )
      : demoPromptFor(tok, modelDir).ids;
    const { executor } = await generateWithPlan(
      engine,
      plan,
      { promptIds: ids, maxNewTokens: 2, stopIds: [] },
      registry,
    );
    const trace = executor.trace;
    console.log(`${source.file} on ${modelDir} (${ids.length}-token prompt)`);
    console.log("layer  lazy score  kept per KV head (of prompt)");
    trace.forEach((layer, l) => {
      const lazy = layer.lazy_score === undefined
        ? "     -    "
        : `${layer.lazy_score.toFixed(3).padStart(6)}${layer.lazy ? " L " : "   "} `;
      const kept = layer.heads.map((h) => {
        const r = (h as { retrieval_score?: number }).retrieval_score;
        return `${h.kept.length}${r === undefined ? "" : ` (r ${r.toFixed(3)})`}`;
      }).join("  ");
      console.log(`${String(l).padStart(5)}  ${lazy}  ${kept}`);
    });
    if (typeof v.out === "string") {
      const out = v.out;
      const html = renderKeptTokens({
        title: plan.name ?? source.file,
        policySource: source.text,
        model: modelDir.split("/").filter(Boolean).at(-1) ?? modelDir,
        tokens: ids.map((id) => tok.decode([id])),
        layers: trace.map((layer) => ({
          lazyScore: layer.lazy_score,
          lazy: layer.lazy,
          heads: layer.heads.map((h) => ({
            pipeline: h.pipeline,
            kept: h.kept,
            retrievalScore: (h as { retrieval_score?: number }).retrieval_score,
          })),
        })),
      });
      writeOutput("inspect", `${out}/kept.html`, html);
      writeOutput(
        "inspect",
        `${out}/trace.json`,
        JSON.stringify({ plan, trace }, null, 2) + "\n",
      );
      console.error(`wrote ${out}/kept.html and ${out}/trace.json`);
    }
    return 0;
  } finally {
    engine.close();
  }
}
