/**
 * `deno task export --to kvpress POLICY [--out F]`: a runnable Python script that runs the policy
 * on NVIDIA kvpress (PyTorch / Hugging Face transformers) through the `kvpolicy_kvpress` bridge in
 * `python/`. The compiled plan is embedded; the bridge builds the press and refuses, naming the
 * rule, whatever kvpress cannot express (docs/kvpress.md).
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import { compilePolicy } from "../plan/compile.ts";
import type { Plan } from "../plan/plan.ts";
import { renderDiagnostics } from "../policy/diagnostics.ts";
import { parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { prepareOutputFile, writeOutput } from "./outputs.ts";
import { registryFor } from "./policyLoader.ts";
import { readPolicySource } from "./policySource.ts";
import { Engine } from "../runtime/engine.ts";
import { UnsupportedPolicyError } from "../runtime/executable.ts";
import { assignmentsWithoutPrompt } from "../runtime/modelAssignments.ts";

/** Usage text of `export`. */
export const EXPORT_USAGE =
  `usage: deno task export --to kvpress POLICY [--model DIR|FILE.gguf] [--out FILE]
  POLICY   a .kvp file, a shipped policy name (snapkv) or inline text ('else -> snap(k=1024)')
  --to     the target engine; kvpress (NVIDIA kvpress on Hugging Face transformers)
  --model  resolve per-model detectors (heads retrieval) on this model and embed which rule
           each (layer, KV head) takes; the script must then run on the same model
  --out    write the script to FILE (under out/) instead of standard output
The script needs the bridge: pip install kvpress==0.5.5 'transformers<5.3' ./python`;

/** Which rule each (layer, KV head) takes on one model (`[layer][kvHead]`, null = none). */
export interface ResolvedHeads {
  /** The model it was resolved on, as given. */
  model: string;
  /** Rule indices. */
  assignments: (number | null)[][];
}

/** The Python script that runs `plan` (resolved on a model when `resolved` is given) on kvpress. */
export function kvpressScript(plan: Plan, policyFile: string, resolved?: ResolvedHeads): string {
  const name = plan.name ?? policyFile;
  // A JSON string literal is also a valid Python string literal.
  const planLiteral = JSON.stringify(JSON.stringify(resolved ? { ...plan, resolved } : plan));
  const rules = plan.rules.map((r) => `#   ${r.text}`).join("\n");
  return `#!/usr/bin/env python3
"""kvpolicy policy ${JSON.stringify(name)} on NVIDIA kvpress (exported by \`deno task export\`).

Rules (first match wins per layer):
${rules.replaceAll("#   ", "    ")}

Needs the kvpolicy_kvpress bridge from kvpolicy's repository and kvpress:
    pip install kvpress==0.5.5 'transformers<5.3' ./python
Run:
    python3 this_script.py --model MODEL_DIR_OR_GGUF --prompt "..." [--max-new-tokens 64]
    python3 this_script.py --model ... --prompt-ids 1,2,3 --json
On a multi-GPU node, --device-map auto --dtype bfloat16 spreads the model with accelerate.
Budgets are per KV head and resolved against the prompt length, as in kvpolicy.${
    resolved
      ? `\nHead rules were resolved on ${resolved.model}: run this script on that model.`
      : ""
  }
"""
# policy source: ${policyFile} (${plan.sourceHash})

import argparse
import json
import sys

PLAN = json.loads(${planLiteral})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face folder or .gguf file")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt")
    prompt.add_argument("--prompt-ids", help="comma-separated token ids")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device-map", default=None, help="e.g. auto (accelerate), cuda:0")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", action="store_true", help="print the token ids as JSON")
    args = parser.parse_args()
    try:
        from kvpolicy_kvpress import PlanError, build_press, generate, load_model, prompt_ids
    except ImportError as e:
        print(f"error: {e}; install the bridge: pip install kvpress==0.5.5 ./python", file=sys.stderr)
        return 1
    try:
        model = load_model(args.model, device_map=args.device_map, dtype=args.dtype)
        config = model.config
        built = build_press(PLAN, config.num_hidden_layers, config.num_key_value_heads)
        ids, tokenizer = prompt_ids(model, args.model, args.prompt, args.prompt_ids)
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for note in built.notes:
        print(f"note: {note}", file=sys.stderr)
    tokens = generate(model, built, ids, args.max_new_tokens)
    if args.json:
        print(json.dumps({"prompt_tokens": len(ids), "tokens": tokens}))
    elif tokenizer is not None:
        print(tokenizer.decode(tokens, skip_special_tokens=True))
    else:
        print(" ".join(str(t) for t in tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
`;
}

/** Runs `export`; returns the exit code. */
export async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags("export", args, {
    to: { type: "string" },
    out: { type: "string" },
    model: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(EXPORT_USAGE);
    return 0;
  }
  if (values.to !== "kvpress") {
    throw new UserError(
      `export: --to ${values.to ?? "(missing)"}: the one target is kvpress\n${EXPORT_USAGE}`,
    );
  }
  if (positionals.length !== 1) {
    throw new UserError(`export: give exactly one policy\n${EXPORT_USAGE}`);
  }
  const out = values.out as string | undefined;
  if (out !== undefined) {
    // `out/` need not exist on a fresh clone: make the script's folder (inside what the task
    // may write; anywhere else the permission check below names the problem).
    const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : "";
    if (dir && (dir === "out" || dir.startsWith("out/"))) {
      try {
        Deno.mkdirSync(dir, { recursive: true });
      } catch (e) {
        throw new UserError(`export --out '${out}': cannot make ${dir}: ${(e as Error).message}`);
      }
    }
    prepareOutputFile("export", out, "out");
  }
  const source = readPolicySource(positionals[0]);
  const registry = await registryFor(source, { allowPlugins: false, plugins: [] }).catch(() => {
    throw new UserError(
      `export: ${source.file} loads third-party plugins ('use'); kvpress cannot run kvpolicy plugins`,
    );
  });
  const result = compilePolicy(source.text, source.file, registry);
  if (result.diagnostics.length) {
    console.error(renderDiagnostics(source.file, source.text, result.diagnostics));
  }
  if (!result.plan) {
    throw new UserError(`${source.file}: the policy does not check; nothing exported`);
  }
  const plan = result.plan;
  const model = values.model as string | undefined;
  let resolved: ResolvedHeads | undefined;
  const perModel = plan.detectors.filter((d) => d.name === "retrieval");
  if (perModel.length && model === undefined) {
    throw new UserError(
      `export: ${source.file} selects heads with 'retrieval', which is found per model: ` +
        "give --model (the model the script will run on) to resolve it",
    );
  }
  if (model !== undefined && perModel.length) {
    const engine = await Engine.open(model, { onCompile: compileProgress() });
    try {
      resolved = { model, assignments: await assignmentsWithoutPrompt(engine, plan, registry) };
    } catch (e) {
      if (e instanceof UnsupportedPolicyError) throw new UserError(`export: ${e.message}`);
      throw e;
    } finally {
      engine.close();
    }
  }
  const script = kvpressScript(plan, source.file, resolved);
  if (out === undefined) console.log(script);
  else {
    writeOutput("export", out, script);
    console.error(`export: wrote ${out}`);
  }
  return 0;
}
