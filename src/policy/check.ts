/**
 * Semantic checking: resolves a parsed policy against the plugin registry's schemas and produces
 * the typed plan rules, or diagnostics (unknown names with suggestions, unknown or duplicate
 * parameters, wrong types, out-of-range values, misplaced detectors, pipeline order, unreachable
 * rules, unmatched heads).
 *
 * @module
 */

import type { PlanCall, PlanRule, PlanSelector } from "../plan/plan.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import type { ParamSpec, ParamValue, PluginSchema } from "../plugins/schema.ts";
import { windowDecodeMode } from "../plugins/windowPress.ts";
import type {
  CallNode,
  ConstantNode,
  PolicyAst,
  RuleNode,
  SelectorNode,
  Span,
  ValueNode,
} from "./ast.ts";
import { type Diagnostic, spanAt } from "./diagnostics.ts";
import { formatStatement } from "./format.ts";
import { MAX_POLICY_CHARS } from "./parse.ts";
import { convertValue, exampleValue } from "./values.ts";
import { PipelineChecker, where } from "./pipelineRules.ts";
import { didYouMean } from "./suggest.ts";

/** What checking yields: plan pieces (meaningful only when there are no errors). */
export interface CheckResult {
  /** `policy "name"`. */
  name: string | null;
  /** `use` paths. */
  uses: string[];
  /** Typed rules. */
  rules: PlanRule[];
  /** Distinct detector invocations, first use first. */
  detectors: PlanCall[];
  /** Errors and warnings. */
  diagnostics: Diagnostic[];
}

/** Checks a parsed policy against a registry. Never throws on any AST. */
export function checkPolicy(ast: PolicyAst, registry: PluginRegistry): CheckResult {
  return new Checker(ast, registry).run();
}

class Checker {
  diagnostics: Diagnostic[] = [];
  constants = new Map<string, ConstantNode>();
  usedConstants = new Set<string>();
  uses: string[] = [];
  detectors: PlanCall[] = [];
  /** Keys of `uses` and `detectors`, so that duplicates are found in constant time. */
  seenUses = new Set<string>();
  seenDetectors = new Set<string>();

  pipelines: PipelineChecker;

  constructor(private ast: PolicyAst, private registry: PluginRegistry) {
    this.pipelines = new PipelineChecker(registry, {
      error: (span, message, hint) => this.error(span, message, hint),
      warn: (span, message, hint) => this.warn(span, message, hint),
      params: (call, schema) => this.params(call, schema),
      unknown: (call, what, names) => this.unknown(call, what, names),
    });
  }

  error(span: Span, message: string, hint?: string) {
    this.diagnostics.push({ severity: "error", message, span, hint });
  }

  warn(span: Span, message: string, hint?: string) {
    this.diagnostics.push({ severity: "warning", message, span, hint });
  }

  run(): CheckResult {
    // An oversize policy was not parsed (its one error says so): nothing to add.
    if (this.ast.source.length > MAX_POLICY_CHARS) return this.result(null, []);
    let name: string | null = null;
    let headerSeen = false;
    for (const s of this.ast.statements) {
      if (s.kind === "header") {
        if (headerSeen) this.error(s.span, "a policy has at most one 'policy \"name\"' header");
        headerSeen = true;
        name = s.name;
      } else if (s.kind === "use") {
        if (this.seenUses.has(s.path)) this.warn(s.span, `'${s.path}' is imported twice`);
        else {
          this.seenUses.add(s.path);
          this.uses.push(s.path);
        }
      } else if (s.kind === "constant") {
        if (this.constants.has(s.name)) {
          this.error(s.nameSpan, `constant '${s.name}' is defined twice`);
        } else if (s.value.kind === "name") {
          this.error(
            s.value.span,
            `a constant's value must be a number, a string, max(...) or min(...)`,
          );
        } else this.constants.set(s.name, s);
      }
    }
    const rules: PlanRule[] = [];
    const checked: [RuleNode, PlanRule][] = [];
    const rulesAst = this.ast.statements.filter((s): s is RuleNode => s.kind === "rule");
    let catchAll: RuleNode | undefined;
    const seenTargets = new Map<string, RuleNode>();
    for (const r of rulesAst) {
      const rule = this.rule(r);
      const key = targetKey(r);
      if (catchAll) {
        this.error(
          r.target.span,
          `unreachable rule: '${targetText(catchAll)}' at ${
            where(catchAll)
          } already matches every layer and head`,
        );
      } else if (seenTargets.has(key)) {
        const first = seenTargets.get(key)!;
        this.error(
          r.target.span,
          `unreachable rule: the rule at ${where(first)} has the same target '${
            targetText(first)
          }'`,
        );
      }
      seenTargets.set(key, r);
      if (!catchAll && isCatchAll(r)) catchAll = r;
      if (rule) {
        rules.push(rule);
        checked.push([r, rule]);
      }
    }
    this.pipelines.chunkedPolicy(checked);
    if (rulesAst.length === 0) {
      const end = this.ast.source.length;
      this.warn(
        spanAt(this.ast.source, end, end + 1),
        "the policy has no rules: every head keeps the full cache",
      );
    } else if (!catchAll) {
      const last = rulesAst.at(-1)!;
      this.warn(
        last.span,
        "heads matched by no rule keep the full cache",
        "end with 'else -> ...' to choose what they keep ('check --explain --model DIR' lists them)",
      );
    }
    for (const c of this.constants.values()) {
      if (!this.usedConstants.has(c.name)) this.warn(c.nameSpan, `constant '${c.name}' is unused`);
    }
    return this.result(name, rules);
  }

  result(name: string | null, rules: PlanRule[]): CheckResult {
    return {
      name,
      uses: this.uses,
      rules,
      detectors: this.detectors,
      diagnostics: this.diagnostics,
    };
  }

  rule(r: RuleNode): PlanRule | undefined {
    const layers = r.target.layers ? this.selector(r.target.layers, "layers") : null;
    const heads = r.target.heads ? this.selector(r.target.heads, "heads") : null;
    const pipeline = this.pipelines.pipeline(r.pipeline);
    if (layers === undefined || heads === undefined || !pipeline) return undefined;
    for (const press of pipeline) {
      if (press.name !== "window" || !("decode" in press.params)) continue;
      // SimLayerKV's lazy layers grow after the cut; StreamingLLM's window rolls.
      const onLazy = layers?.kind === "detector" && layers.detector.name === "lazy";
      press.params.decode = windowDecodeMode(press.params.decode as string | null, onLazy);
      press.when = press.params.decode === "grow" ? "prefill" : "bounded";
    }
    return {
      line: r.span.line,
      text: formatStatement(r),
      isElse: r.target.isElse,
      layers,
      heads,
      pipeline,
    };
  }

  selector(s: SelectorNode, target: "layers" | "heads"): PlanSelector | undefined {
    if (s.kind === "all") return { kind: "all" };
    if (s.kind === "indices") {
      let ok = true;
      for (const item of s.items) {
        if (item.end !== null && item.end < item.start) {
          this.error(item.span, `empty range ${item.start}..${item.end}`, "ranges are inclusive");
          ok = false;
        }
      }
      if (!ok) return undefined;
      return { kind: "indices", ranges: s.items.map((i) => [i.start, i.end]) };
    }
    const call = s.call;
    const detector = this.registry.detector(call.name);
    if (!detector) {
      if (this.registry.press(call.name)) {
        this.error(
          call.nameSpan,
          `'${call.name}' is a press, not a detector`,
          "presses go after '->'",
        );
      } else this.unknown(call, "detector", this.registry.detectorNames());
      return undefined;
    }
    if (detector.target !== target) {
      this.error(
        call.nameSpan,
        `detector '${call.name}' classifies ${detector.target}, not ${target}`,
        `write '${detector.target} ${call.name}'`,
      );
      return undefined;
    }
    const params = this.params(call, detector);
    if (!params) return undefined;
    const planCall = { name: call.name, params };
    const key = JSON.stringify(planCall);
    if (!this.seenDetectors.has(key)) {
      this.seenDetectors.add(key);
      this.detectors.push(planCall);
    }
    return { kind: "detector", detector: planCall };
  }

  unknown(call: CallNode, what: "press" | "detector", names: string[]) {
    const hint = didYouMean(call.name, names, what === "press" ? "presses" : "detectors");
    const shown = this.uses.slice(0, 3).map((u) => `"${u}"`);
    if (this.uses.length > 3) shown.push(`${this.uses.length - 3} more`);
    const pluginNote = shown.length
      ? ` (it may come from ${shown.join(", ")}, which is not loaded)`
      : "";
    this.error(call.nameSpan, `unknown ${what} '${call.name}'${pluginNote}`, hint);
  }

  params(call: CallNode, schema: PluginSchema): Record<string, ParamValue> | undefined {
    const given = new Map<string, { spec: ParamSpec; value: ValueNode; span: Span }>();
    let ok = true;
    let positional = 0;
    let sawNamed = false;
    for (const arg of call.args) {
      let spec: ParamSpec | undefined;
      if (arg.name) {
        sawNamed = true;
        spec = schema.params.find((p) => p.name === arg.name!.text);
        if (!spec) {
          const names = schema.params.map((p) => p.name);
          this.error(
            arg.name.span,
            `'${schema.name}' has no parameter '${arg.name.text}'`,
            names.length ? didYouMean(arg.name.text, names, "parameters") : "it takes none",
          );
          ok = false;
          continue;
        }
      } else {
        if (sawNamed) {
          this.error(arg.span, "a positional argument cannot follow a named one");
          ok = false;
          continue;
        }
        spec = schema.params[positional++];
        if (!spec) {
          const n = schema.params.length;
          this.error(
            arg.span,
            `'${schema.name}' takes ${
              n === 0 ? "no arguments" : `at most ${n} argument${n > 1 ? "s" : ""}`
            }`,
            n ? `parameters: ${schema.params.map((p) => p.name).join(", ")}` : undefined,
          );
          ok = false;
          continue;
        }
      }
      if (given.has(spec.name)) {
        this.error(arg.span, `parameter '${spec.name}' is given twice`);
        ok = false;
        continue;
      }
      given.set(spec.name, { spec, value: this.resolve(arg.value), span: arg.span });
    }
    const params: Record<string, ParamValue> = {};
    for (const spec of schema.params) {
      const g = given.get(spec.name);
      if (!g) {
        if (spec.default === undefined) {
          this.error(
            call.nameSpan,
            `'${schema.name}' needs '${spec.name}' (${spec.doc})`,
            `e.g. ${schema.name}(${spec.name}=${exampleValue(spec)})`,
          );
          ok = false;
        } else params[spec.name] = spec.default;
        continue;
      }
      const converted = convertValue(g.value, spec);
      if (typeof converted === "object" && converted !== null && "error" in converted) {
        const span = converted.span ?? g.value.span;
        this.error(span, `${schema.name}: ${converted.error}`, converted.hint);
        ok = false;
      } else params[spec.name] = converted as ParamValue;
    }
    return ok ? params : undefined;
  }

  /**
   * Replaces a constant's name by its value, and in `max(...)`/`min(...)` (written in place or
   * held by a constant) each argument that names a constant by that constant's value.
   */
  resolve(v: ValueNode, inside = false): ValueNode {
    if (v.kind === "extremum" && !inside) {
      return { ...v, args: v.args.map((a) => this.resolve(a, true)) };
    }
    if (v.kind !== "name") return v;
    const c = this.constants.get(v.name);
    if (!c) return v;
    this.usedConstants.add(v.name);
    if (c.value.kind === "extremum") return inside ? c.value : this.resolve(c.value);
    return { ...c.value, span: v.span };
  }
}

function isCatchAll(r: RuleNode): boolean {
  const t = r.target;
  const all = (s: SelectorNode | null) => s === null || s.kind === "all";
  return t.isElse || (all(t.layers) && all(t.heads));
}

function targetText(r: RuleNode): string {
  return formatStatement(r).split(" -> ")[0];
}

function targetKey(r: RuleNode): string {
  return targetText(r).replace(/\s+/g, " ");
}
