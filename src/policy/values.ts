/**
 * Converting a literal to a parameter's type: integers, numbers, budgets (`1024`, `4k`, `10%`,
 * `max(251, 10%)`, `min(20%, 4k)`), fractions (`15%`, `0.15`), enums, booleans, strings, and `auto`
 * for run-time defaults.
 *
 * @module
 */

import type { BudgetTerm, ParamSpec, ParamValue } from "../plugins/schema.ts";
import type { ExtremumNode, Span, ValueNode } from "./ast.ts";
import { formatValue } from "./format.ts";
import { K_FACTOR } from "./numbers.ts";
import { didYouMean } from "./suggest.ts";

/** A conversion failure: what is wrong and, optionally, how to write it. */
export interface ValueError {
  /** The problem, naming the parameter. */
  error: string;
  /** A suggestion. */
  hint?: string;
  /** Where the problem is, when it is one argument of `max(...)`/`min(...)` (else the value). */
  span?: Span;
}

function describe(v: ValueNode): string {
  if (v.kind === "number") return `'${v.raw}${v.unit}'`;
  if (v.kind === "string") return `the string ${JSON.stringify(v.value)}`;
  if (v.kind === "extremum") return `'${formatValue(v)}'`;
  return `'${v.name}'`;
}

/** The plain number a literal stands for (`4k` → 4096); percentages are not plain numbers. */
function plain(v: ValueNode): number | undefined {
  if (v.kind !== "number" || v.unit === "%") return undefined;
  return v.unit === "k" ? v.value * K_FACTOR : v.value;
}

/** One budget term: a whole number of entries (`1024`, `4k`) or a percentage of the prompt. */
function budgetTerm(v: ValueNode, name: string): BudgetTerm | ValueError {
  if (v.kind === "number" && v.unit === "%") {
    if (!(v.value > 0 && v.value <= 100)) {
      return { error: `'${name}' must be a percentage in (0%, 100%], not ${describe(v)}` };
    }
    return { fraction: v.value / 100 };
  }
  const n = plain(v);
  if (n === undefined || !Number.isInteger(n)) {
    return {
      error: `'${name}' must be a whole number of cache entries or a percentage, not ${
        describe(v)
      }`,
      hint: `e.g. ${name}=1024, ${name}=4k or ${name}=10%`,
    };
  }
  if (n < 1) return { error: `'${name}' must keep at least 1 entry, not ${n}` };
  return { tokens: n };
}

/** `max(a, b, ...)` / `min(a, b, ...)` of two or more budget terms, not nested. */
function extremumBudget(v: ExtremumNode, name: string): ParamValue | ValueError {
  const hint = `e.g. ${name}=${v.op === "max" ? "max(251, 10%)" : "min(20%, 4k)"}`;
  if (v.args.length < 2) {
    const given = v.args.length === 0 ? "none was" : "only one was";
    return {
      error: `'${name}': ${v.op}(...) takes two or more values, but ${given} given`,
      hint,
    };
  }
  const terms: BudgetTerm[] = [];
  for (const arg of v.args) {
    if (arg.kind === "extremum") {
      return {
        error: `'${name}': ${arg.op}(...) cannot be nested inside ${v.op}(...)`,
        hint: `write the values of one max(...) or min(...) side by side: ${hint}`,
        span: arg.span,
      };
    }
    const term = budgetTerm(arg, name);
    if ("error" in term) return { ...term, span: arg.span };
    terms.push(term);
  }
  return v.op === "max" ? { max: terms } : { min: terms };
}

/** A value for `spec` as a policy would show it in an error's hint (`1024`, `10%`, ...). */
export function exampleValue(spec: ParamSpec): string {
  switch (spec.type.kind) {
    case "budget":
      return "1024";
    case "fraction":
      return "10%";
    case "enum":
      return spec.type.values[0];
    case "bool":
      return "true";
    case "string":
      return '"..."';
    default:
      return String(spec.type.min ?? 1);
  }
}

/** Converts `v` to `spec`'s type, or explains why it cannot. */
export function convertValue(v: ValueNode, spec: ParamSpec): ParamValue | ValueError {
  const name = spec.name;
  const t = spec.type;
  if (v.kind === "name" && v.name === "auto") {
    if (spec.default === null) return null;
    return { error: `'${name}' has no automatic value`, hint: `write a value for ${name}` };
  }
  if (v.kind === "extremum" && t.kind !== "budget") {
    return {
      error: `'${name}' takes no ${v.op}(...): only budget parameters (cache entries or a ` +
        `percentage of the prompt) take max(...) and min(...)`,
      hint: `write one value for ${name}, e.g. ${name}=${exampleValue(spec)}`,
    };
  }
  switch (t.kind) {
    case "int": {
      const n = plain(v);
      if (n === undefined || !Number.isInteger(n)) {
        return { error: `'${name}' must be an integer, not ${describe(v)}` };
      }
      if (t.oneOf && !t.oneOf.includes(n)) {
        return { error: `'${name}' must be one of ${t.oneOf.join(", ")}, not ${n}` };
      }
      if (t.min !== undefined && n < t.min) {
        return { error: `'${name}' must be at least ${t.min}, not ${n}` };
      }
      if (t.max !== undefined && n > t.max) {
        return { error: `'${name}' must be at most ${t.max}, not ${n}` };
      }
      return n;
    }
    case "number": {
      const n = plain(v);
      if (n === undefined || !Number.isFinite(n)) {
        return { error: `'${name}' must be a number, not ${describe(v)}` };
      }
      if (t.min !== undefined && (t.exclusiveMin ? n <= t.min : n < t.min)) {
        return { error: `'${name}' must be ${t.exclusiveMin ? "above" : "at least"} ${t.min}` };
      }
      if (t.max !== undefined && n > t.max) {
        return { error: `'${name}' must be at most ${t.max}, not ${n}` };
      }
      return n;
    }
    case "budget":
      return v.kind === "extremum" ? extremumBudget(v, name) : budgetTerm(v, name);
    case "fraction": {
      if (v.kind === "number" && v.unit === "%") {
        if (!(v.value >= 0 && v.value <= 100)) {
          return { error: `'${name}' must be between 0% and 100%, not ${describe(v)}` };
        }
        return v.value / 100;
      }
      const n = plain(v);
      if (n === undefined || v.kind !== "number" || v.unit !== "" || n < 0 || n > 1) {
        return {
          error: `'${name}' must be a fraction between 0 and 1 or a percentage, not ${describe(v)}`,
        };
      }
      return n;
    }
    case "enum": {
      const word = v.kind === "name" ? v.name : v.kind === "string" ? v.value : undefined;
      if (word === undefined || !t.values.includes(word)) {
        return {
          error: `'${name}' must be one of ${t.values.join(", ")}, not ${describe(v)}`,
          hint: word === undefined ? undefined : didYouMean(word, t.values, "values"),
        };
      }
      return word;
    }
    case "bool": {
      if (v.kind === "name" && (v.name === "true" || v.name === "false")) return v.name === "true";
      return { error: `'${name}' must be true or false, not ${describe(v)}` };
    }
    case "string": {
      if (v.kind === "string") return v.value;
      return { error: `'${name}' must be a string in double quotes, not ${describe(v)}` };
    }
  }
}
