/**
 * A plain-language explanation of a compiled plan (`check --explain`): for each rule, which
 * layers and heads it takes and what each press does, with every parameter resolved.
 * (The per-model layer × head table needs the runtime's detectors and lives with them.)
 *
 * @module
 */

import { formatParamValue } from "../plugins/schema.ts";
import type { Plan, PlanCall, PlanSelector } from "./plan.ts";

/** A call as policy text with every parameter resolved, e.g. `snap(k=64, window=32, pool=7)`. */
export function callText(call: PlanCall): string {
  const entries = Object.entries(call.params);
  if (!entries.length) return call.name;
  return `${call.name}(${entries.map(([k, v]) => `${k}=${formatParamValue(v)}`).join(", ")})`;
}

function selector(s: PlanSelector | null, what: "layers" | "KV heads"): string {
  if (!s || s.kind === "all") return `every ${what === "layers" ? "layer" : "KV head"}`;
  if (s.kind === "indices") {
    const list = s.ranges.map((
      [a, b],
    ) => (b === null ? `${a} to the last` : a === b ? `${a}` : `${a} to ${b}`));
    return `${what} ${list.join(", ")}`;
  }
  return `${what} that ${callText(s.detector)} flags`;
}

/** Renders the explanation as text. */
export function explainPlan(plan: Plan): string {
  const out: string[] = [];
  out.push(
    `policy ${plan.name ? `"${plan.name}"` : "(unnamed)"}  ${plan.sourceHash.slice(0, 19)}…`,
  );
  if (plan.detectors.length) out.push(`detectors: ${plan.detectors.map(callText).join(", ")}`);
  plan.rules.forEach((rule, i) => {
    out.push("");
    out.push(`rule ${i + 1} (line ${rule.line}): ${rule.text}`);
    const who = rule.isElse
      ? "every layer and KV head no earlier rule took"
      : `${selector(rule.layers, "layers")}, ${selector(rule.heads, "KV heads")}`;
    out.push(`  takes: ${who}`);
    for (const press of rule.pipeline) {
      const when = press.when === "bounded"
        ? "keeps the cache bounded while decoding"
        : "once, after prefill";
      out.push(`  ${press.role.padEnd(7)} ${callText(press)}  — ${when}`);
    }
  });
  out.push("");
  out.push("heads no rule takes: full cache. Budgets count entries per KV head, window included.");
  return out.join("\n");
}
