/**
 * kvpolicy: compress an LLM's KV cache by writing a short policy.
 *
 * ```ts
 * import { compileOrThrow } from "./mod.ts";
 * const plan = compileOrThrow("layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024)");
 * ```
 *
 * @module
 */

export type {
  ArgumentNode,
  CallNode,
  PolicyAst,
  RuleNode,
  SelectorNode,
  Span,
  StatementNode,
  ValueNode,
} from "./src/policy/ast.ts";
export { parsePolicy, type ParseResult } from "./src/policy/parse.ts";
export { checkPolicy, type CheckResult } from "./src/policy/check.ts";
export { formatPolicy } from "./src/policy/format.ts";
export {
  type Diagnostic,
  PolicyError,
  renderDiagnostic,
  renderDiagnostics,
} from "./src/policy/diagnostics.ts";
export {
  compileOrThrow,
  compilePolicy,
  type CompileResult,
  sourceHash,
} from "./src/plan/compile.ts";
export type { Plan, PlanCall, PlanPress, PlanRule, PlanSelector } from "./src/plan/plan.ts";
export { PLAN_FORMAT } from "./src/plan/plan.ts";
export { explainPlan } from "./src/plan/explain.ts";
export { PluginRegistry } from "./src/plugins/registry.ts";
export { BUILTIN_PLUGINS, defaultRegistry } from "./src/plugins/builtins.ts";
export type {
  Budget,
  DetectorSchema,
  ParamSpec,
  ParamType,
  ParamValue,
  PluginSchema,
  PressRole,
  PressSchema,
} from "./src/plugins/schema.ts";
