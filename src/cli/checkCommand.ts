/**
 * `deno task check P.kvp... [--plan [--yaml]] [--explain] [--json]`: checks policies, prints
 * their diagnostics, and optionally the compiled plan or a plain-language explanation.
 *
 * @module
 */

import { stringify as toYaml } from "yaml";
import { compilePolicy } from "../plan/compile.ts";
import { explainPlan } from "../plan/explain.ts";
import { renderDiagnostics } from "../policy/diagnostics.ts";
import { parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { explainOnModel } from "./explainTable.ts";
import { registryFor } from "./policyLoader.ts";
import { readPolicySource } from "./policySource.ts";

/** Usage text of `check`. */
export const CHECK_USAGE =
  `usage: deno task check POLICY... [--plan [--yaml]] [--explain] [--allow-plugins]
  POLICY  a .kvp file, a shipped policy name (snapkv) or inline text ('else -> snap(k=1024)')
  --plan           print the compiled plan as JSON (--yaml: as YAML)
  --explain        print what each rule does, with every parameter resolved
  --explain --model DIR [--prompt T | --prompt-file F]
                   also run the detectors on that model and prompt (default: the needle demo)
                   and print the layer × KV head table of what each head gets
  --allow-plugins  permit policies that 'use' third-party plugin code (it runs!)
  --plugin FILE    load a plugin module (repeatable; needs --allow-plugins)`;

/** Runs `check`; returns the exit code. */
export async function checkCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags("check", args, {
    plan: { type: "boolean" },
    yaml: { type: "boolean" },
    explain: { type: "boolean" },
    model: { type: "string" },
    prompt: { type: "string" },
    "prompt-file": { type: "string" },
    "allow-plugins": { type: "boolean" },
    plugin: { type: "string", multiple: true },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(CHECK_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UserError(`check: no policy given\n${CHECK_USAGE}`);
  if (values.model !== undefined && !values.explain) {
    throw new UserError(
      "check: --model goes with --explain (the layer × head table on that model)",
    );
  }
  let failed = 0;
  for (const arg of positionals) {
    const source = readPolicySource(arg);
    const registry = await registryFor(source, {
      allowPlugins: values["allow-plugins"] === true,
      plugins: (values.plugin as string[] | undefined) ?? [],
    });
    const result = compilePolicy(source.text, source.file, registry);
    if (result.diagnostics.length) {
      console.error(renderDiagnostics(source.file, source.text, result.diagnostics));
    }
    const plan = result.plan;
    if (!plan) {
      const n = result.diagnostics.filter((d) => d.severity === "error").length;
      console.error(`${source.file}: ${n} error${n === 1 ? "" : "s"}`);
      failed++;
      continue;
    }
    if (values.plan) {
      console.log(values.yaml ? toYaml(plan) : JSON.stringify(plan, null, 2));
    } else if (values.explain && values.model !== undefined) {
      console.log(explainPlan(plan));
      console.log("");
      console.log(
        await explainOnModel(plan, registry, values.model as string, {
          text: values.prompt as string | undefined,
          file: values["prompt-file"] as string | undefined,
        }),
      );
    } else if (values.explain) {
      console.log(explainPlan(plan));
    } else {
      const warnings = result.diagnostics.length;
      const note = warnings ? `, ${warnings} warning${warnings === 1 ? "" : "s"}` : "";
      const n = plan.rules.length;
      console.log(`${source.file}: ok (${n} rule${n === 1 ? "" : "s"}${note})`);
    }
  }
  return failed ? 1 : 0;
}
