/**
 * Policy text → compiled plan: parse, check against the plugin registry, hash the source.
 * Compiling never executes code (`use` imports are only recorded).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { defaultRegistry } from "../plugins/builtins.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { PolicyAst } from "../policy/ast.ts";
import { checkPolicy } from "../policy/check.ts";
import { type Diagnostic, PolicyError } from "../policy/diagnostics.ts";
import { parsePolicy } from "../policy/parse.ts";
import { type Plan, PLAN_FORMAT } from "./plan.ts";

/** The outcome of compiling: a plan when there are no errors, and all diagnostics. */
export interface CompileResult {
  /** The plan, or `null` if any error was found. */
  plan: Plan | null;
  /** The parsed AST (possibly partial). */
  ast: PolicyAst;
  /** Errors and warnings in source order. */
  diagnostics: Diagnostic[];
}

/** `sha256:` + hex of the UTF-8 source. */
export function sourceHash(source: string): string {
  return "sha256:" + createHash("sha256").update(source).digest("hex");
}

/** Compiles policy text. Never throws on any input. */
export function compilePolicy(
  source: string,
  file = "<inline>",
  registry: PluginRegistry = defaultRegistry(),
): CompileResult {
  const parsed = parsePolicy(source, file);
  const checked = checkPolicy(parsed.ast, registry);
  const diagnostics = [...parsed.diagnostics, ...checked.diagnostics].sort((a, b) =>
    a.span.start - b.span.start
  );
  const failed = diagnostics.some((d) => d.severity === "error");
  const plan: Plan | null = failed ? null : {
    format: PLAN_FORMAT,
    name: checked.name,
    sourceHash: sourceHash(source),
    uses: checked.uses,
    detectors: checked.detectors,
    rules: checked.rules,
    unmatched: "full",
  };
  return { plan, ast: parsed.ast, diagnostics };
}

/** Compiles policy text or throws a {@link PolicyError} holding every diagnostic. */
export function compileOrThrow(
  source: string,
  file = "<inline>",
  registry?: PluginRegistry,
): Plan {
  const result = compilePolicy(source, file, registry);
  if (!result.plan) throw new PolicyError(file, source, result.diagnostics);
  return result.plan;
}
