/** Test helpers for the policy language. @module */
import { compilePolicy } from "../../src/plan/compile.ts";
import type { PolicyAst } from "../../src/policy/ast.ts";
import type { Diagnostic } from "../../src/policy/diagnostics.ts";

/** The AST's statements with every span removed, for structural comparison. */
export function shape(ast: PolicyAst): unknown {
  return JSON.parse(
    JSON.stringify(
      ast.statements,
      (key, value) => (key === "span" || key === "nameSpan" ? undefined : value),
    ),
  );
}

/** Compiles `source` and returns only its error diagnostics. */
export function errorsOf(source: string): Diagnostic[] {
  return compilePolicy(source).diagnostics.filter((d) => d.severity === "error");
}

/** Compiles `source` and returns only its warnings. */
export function warningsOf(source: string): Diagnostic[] {
  return compilePolicy(source).diagnostics.filter((d) => d.severity === "warning");
}

/** The messages of a diagnostic list, with `line:col` prefixes. */
export function messages(list: Diagnostic[]): string[] {
  return list.map((d) => `${d.span.line}:${d.span.column} ${d.message}`);
}
