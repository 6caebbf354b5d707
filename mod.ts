/**
 * kvpolicy: compress an LLM's KV cache by writing a short policy.
 *
 * ```ts
 * import { compileOrThrow, Engine, PolicyExecutor } from "./mod.ts";
 * const plan = compileOrThrow("else -> snap(k=64, pool=21)");
 * const engine = await Engine.open("models/planted-needle");
 * const executor = new PolicyExecutor(plan, engine.config, engine.ctx);
 * const result = await engine.generate({
 *   promptIds: engine.tokenizer!.encode("..."),
 *   maxNewTokens: 16,
 *   observe: executor.observeRequest(),
 *   afterPrefill: (state) => executor.apply(state),
 * });
 * engine.close();
 * ```
 *
 * @module
 */

export type {
  ArgumentNode,
  CallNode,
  ExtremumNode,
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
  BudgetTerm,
  DetectorInput,
  DetectorSchema,
  ParamSpec,
  ParamType,
  ParamValue,
  PluginSchema,
  PressNeeds,
  PressRole,
  PressSchema,
} from "./src/plugins/schema.ts";
export { formatParamValue } from "./src/plugins/schema.ts";
export {
  allPositions,
  averageOverGroups,
  type LayerScoresInput,
  topPositions,
} from "./src/plugins/press.ts";
export { resolveBudget } from "./src/plugins/budget.ts";
export { loadPlugins, PluginLoadError, resolvePluginUrl } from "./src/plugins/loadPlugins.ts";
// The runtime: load a Hugging Face folder onto WebGPU and generate with a plan applied.
export { loadModel } from "./src/model/loadModel.ts";
export { loadTokenizer, type TextTokenizer } from "./src/model/tokenizer.ts";
export type { ModelConfig, ModelWeights, Tensor } from "./src/model/types.ts";
export {
  Engine,
  type GenerationRequest,
  type GenerationResult,
  type SamplingConfig,
} from "./src/runtime/engine.ts";
export { PolicyExecutor } from "./src/runtime/policyExecutor.ts";
export type { HeadTrace, LayerTrace } from "./src/runtime/policyTrace.ts";
export { PhaseGate } from "./src/runtime/phaseGate.ts";
export type { KvReport } from "./src/runtime/kvReport.ts";
