/**
 * Fuzzing the policy front end: random text, mutated real policies, and grammar-aware random
 * policies (max/min budgets included). Every input must either compile or yield structured
 * diagnostics with valid spans — never a throw or a hang — and every input that parses must
 * survive the formatter round trip.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { compilePolicy } from "../../src/plan/compile.ts";
import { formatPolicy } from "../../src/policy/format.ts";
import { parsePolicy } from "../../src/policy/parse.ts";
import { resolveBudget } from "../../src/plugins/budget.ts";
import type { Budget } from "../../src/plugins/schema.ts";
import { shape } from "./_helpers.ts";

const POLICY_DIR = new URL("../../policies/", import.meta.url);
const SEEDS = [...Deno.readDirSync(POLICY_DIR)]
  .filter((e) => e.name.endsWith(".kvp"))
  .map((e) => Deno.readTextFileSync(new URL(e.name, POLICY_DIR)));
SEEDS.push("layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024, pool=7)");

const FRAGMENTS = [
  "layers",
  "heads",
  "else",
  "policy",
  "use",
  "let",
  "->",
  "-",
  ">",
  "..",
  ".",
  ";",
  ",",
  "=",
  "+",
  "*",
  "(",
  ")",
  '"',
  "#",
  "\n",
  " ",
  "snap",
  "window",
  "lazy",
  "retrieval",
  "k=",
  "4k",
  "10%",
  "max(",
  "min",
  "max(251, 10%)",
  "0..3",
  "24..",
  "1e9",
  "-1",
  "\\",
  "\u00e9",
  "\u{1F600}",
  "\t",
  "\r\n",
  "99999999999999999999",
];

/** Checks the invariants every input must satisfy; returns whether it parsed cleanly. */
function invariants(source: string): boolean {
  const result = compilePolicy(source, "fuzz.kvp");
  const lines = source.split("\n").length;
  for (const d of result.diagnostics) {
    assert.ok(d.severity === "error" || d.severity === "warning");
    assert.equal(typeof d.message, "string");
    assert.ok(d.message.length > 0);
    assert.ok(d.span.line >= 1 && d.span.line <= lines + 1, `line ${d.span.line} of ${lines}`);
    assert.ok(d.span.column >= 1);
    assert.ok(d.span.start >= 0 && d.span.start <= source.length + 1);
  }
  const hasErrors = result.diagnostics.some((d) => d.severity === "error");
  assert.equal(result.plan === null, hasErrors);
  return parsePolicy(source).diagnostics.length === 0;
}

function roundTrip(source: string): void {
  const parsed = parsePolicy(source);
  const once = formatPolicy(parsed.ast);
  const again = parsePolicy(once);
  assert.deepEqual(again.diagnostics, [], `formatted text does not parse:\n${once}`);
  assert.deepEqual(shape(again.ast), shape(parsed.ast));
  assert.equal(formatPolicy(again.ast), once, "formatting is not idempotent");
  assert.deepEqual(again.ast.comments.map((c) => c.text), parsed.ast.comments.map((c) => c.text));
}

Deno.test("fuzz: random text never crashes the compiler", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
      if (invariants(s)) roundTrip(s);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("fuzz: random token soup never crashes the compiler", () => {
  const soup = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 }).map((a) => a.join(""));
  fc.assert(
    fc.property(soup, (s) => {
      if (invariants(s)) roundTrip(s);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("fuzz: mutated real policies give diagnostics or round-trip", () => {
  const mutation = fc.record({
    seed: fc.constantFrom(...SEEDS),
    edits: fc.array(
      fc.record({
        at: fc.nat(),
        length: fc.nat({ max: 12 }),
        insert: fc.oneof(fc.constantFrom(...FRAGMENTS), fc.string({ maxLength: 4 })),
      }),
      { minLength: 1, maxLength: 4 },
    ),
  }).map(({ seed, edits }) => {
    let s = seed;
    for (const e of edits) {
      const at = e.at % (s.length + 1);
      s = s.slice(0, at) + e.insert + s.slice(at + e.length);
    }
    return s;
  });
  fc.assert(
    fc.property(mutation, (s) => {
      if (invariants(s)) roundTrip(s);
    }),
    { numRuns: 3000 },
  );
});

const ident = fc.constantFrom(
  "snap",
  "window",
  "full",
  "quant",
  "lazy",
  "retrieval",
  "foo",
  "k",
  "x_1",
  "max",
  "min",
);
const scalar = fc.oneof(
  fc.nat({ max: 100000 }).map(String),
  fc.tuple(fc.nat({ max: 99 }), fc.nat({ max: 99 })).map(([a, b]) => `${a}.${b}`),
  fc.nat({ max: 64 }).map((n) => `${n}k`),
  fc.nat({ max: 100 }).map((n) => `${n}%`),
  fc.string({ maxLength: 6 }).map((s) => JSON.stringify(s).replace(/\\u[0-9a-f]{4}/g, "")),
  ident,
);
/** `max(...)`/`min(...)` of 0–4 values, sometimes nested (which parses; the checker refuses). */
const extremum = fc.tuple(
  fc.constantFrom("max", "min"),
  fc.array(
    fc.oneof({ weight: 5, arbitrary: scalar }, {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom("max", "min"), fc.array(scalar, { maxLength: 3 })).map((
        [f, a],
      ) => `${f}(${a.join(", ")})`),
    }),
    { maxLength: 4 },
  ),
).map(([f, a]) => `${f}(${a.join(", ")})`);
const value = fc.oneof({ weight: 6, arbitrary: scalar }, { weight: 1, arbitrary: extremum });
const argument = fc.oneof(value, fc.tuple(ident, value).map(([n, v]) => `${n}=${v}`));
const call = fc.oneof(
  ident,
  fc.tuple(ident, value).map(([n, v]) => `${n} ${v}`),
  fc.tuple(ident, fc.array(argument, { maxLength: 4 })).map(([n, a]) => `${n}(${a.join(", ")})`),
);
const index = fc.oneof(
  fc.nat({ max: 40 }).map(String),
  fc.tuple(fc.nat({ max: 40 }), fc.nat({ max: 40 })).map(([a, b]) => `${a}..${b}`),
  fc.nat({ max: 40 }).map((a) => `${a}..`),
);
const selector = fc.oneof(
  fc.constant("*"),
  call,
  fc.array(index, { minLength: 1, maxLength: 3 }).map((a) => a.join(", ")),
);
const target = fc.oneof(
  fc.constant("else"),
  selector.map((s) => `layers ${s}`),
  selector.map((s) => `heads ${s}`),
  fc.tuple(selector, selector).map(([a, b]) => `layers ${a} heads ${b}`),
);
const statement = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(target, fc.array(call, { minLength: 1, maxLength: 3 })).map(([t, p]) =>
      `${t} -> ${p.join(" + ")}`
    ),
  },
  {
    weight: 1,
    arbitrary: fc.string({ maxLength: 8 }).map((s) =>
      `policy ${JSON.stringify(s).replace(/\\u[0-9a-f]{4}/g, "")}`
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom("a", "b", "budget"), value).map(([n, v]) =>
      `let ${n} = ${v}`
    ),
  },
  { weight: 1, arbitrary: fc.constant('use "./p.ts"') },
);
const comment = fc.oneof(
  fc.constant(""),
  fc.string({ maxLength: 10 }).map((s) => ` # ${s.replace(/[\n\r]/g, "")}`),
);
const generated = fc.array(fc.tuple(statement, comment, fc.constantFrom(";\n", "; ", ";\n\n")), {
  maxLength: 6,
})
  .map((parts) =>
    parts.map(([s, c, sep]) => c ? `${s}${sep.trimEnd()}${c}\n` : `${s}${sep}`).join("")
  );

Deno.test("fuzz: grammar-generated policies parse without syntax errors and round-trip", () => {
  fc.assert(
    fc.property(generated, (s) => {
      assert.ok(
        invariants(s),
        `syntax errors in generated policy:\n${s}\n${JSON.stringify(parsePolicy(s).diagnostics)}`,
      );
      roundTrip(s);
    }),
    { numRuns: 1500 },
  );
});

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const digitString = (maxLength: number) =>
  fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 1, maxLength });
/** Number literals of every shape, many of them near 2^53 and near its `k` edge. */
const literal = fc.record({
  sign: fc.constantFrom("", "-"),
  whole: fc.oneof(
    digitString(25),
    digitString(400),
    fc.bigInt({ min: MAX_SAFE - 3000n, max: MAX_SAFE + 3000n }).map(String),
    fc.bigInt({ min: MAX_SAFE / 1024n - 3n, max: MAX_SAFE / 1024n + 3n }).map(String),
  ),
  fraction: fc.option(digitString(30), { nil: undefined }),
  unit: fc.constantFrom("", "k", "%"),
});
/** Every numeric position; `@` is where the literal goes. */
const NUMERIC_POSITIONS = [
  "else -> snap(k=@)",
  "else -> window @",
  "else -> pyramid(k=1, beta=@)",
  "layers lazy(threshold=@) -> full; else -> full",
  "heads retrieval(top=@) -> full; else -> full",
  "layers 0..@ -> full; else -> full",
  "heads 1, @ -> full; else -> full",
  "let c = @; else -> snap(k=c)",
  "else -> window(recent=max(251, @))",
  "else -> snap(k=min(@, 10%, 1))",
];

/** Every number in a plan, at any depth. */
function numbersIn(value: unknown): number[] {
  if (typeof value === "number") return [value];
  if (typeof value !== "object" || value === null) return [];
  return Object.values(value).flatMap(numbersIn);
}

Deno.test("fuzz: no literal compiles to a non-finite number or an inexact integer", () => {
  const cases = fc.tuple(literal, fc.constantFrom(...NUMERIC_POSITIONS));
  fc.assert(
    fc.property(cases, ([{ sign, whole, fraction, unit }, position]) => {
      const text = `${sign}${whole}${fraction === undefined ? "" : `.${fraction}`}${unit}`;
      const source = position.replace("@", text);
      const result = compilePolicy(source, "fuzz.kvp");
      for (const n of numbersIn(result.plan)) {
        assert.ok(Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n)), source);
      }
      const isIndex = position.includes("..@") || position.includes(", @");
      if (isIndex && !/^\d+$/.test(text)) return; // indices are plain integers, checked first
      // The literal lies in [low, high] × factor (high > low only for fractions).
      const factor = unit === "k" ? 1024n : 1n;
      const low = BigInt(whole) * factor;
      const high = (BigInt(whole) + (/[1-9]/.test(fraction ?? "") ? 1n : 0n)) * factor;
      const refused = result.diagnostics.some((d) =>
        d.span.start === position.indexOf("@") && /is too (large|small)/.test(d.message)
      );
      if (low > MAX_SAFE) assert.ok(refused, `not refused: ${source}`);
      if (high <= MAX_SAFE) assert.ok(!refused, `refused: ${source}`);
    }),
    { numRuns: 1500 },
  );
});

/** Budget terms as a policy writes them, with the count or fraction they stand for. */
const term = fc.oneof(
  fc.integer({ min: 1, max: 9000 }).map((n) => ({ text: String(n), budget: { tokens: n } })),
  fc.integer({ min: 1, max: 8 }).map((n) => ({ text: `${n}k`, budget: { tokens: n * 1024 } })),
  fc.integer({ min: 1, max: 100 }).map((n) => ({ text: `${n}%`, budget: { fraction: n / 100 } })),
);

Deno.test("fuzz: max/min budgets compile to their terms, format canonically, and resolve in range", () => {
  const cases = fc.tuple(
    fc.constantFrom("max", "min"),
    fc.array(term, { minLength: 2, maxLength: 5 }),
    fc.integer({ min: 1, max: 200000 }),
  );
  fc.assert(
    fc.property(cases, ([op, terms, n]) => {
      const text = `${op}(${terms.map((t) => t.text).join(", ")})`;
      const source = `else -> window(sink=4, recent=${text});\n`;
      const plan = compilePolicy(source, "fuzz.kvp").plan;
      assert.ok(plan, source);
      const recent = plan.rules[0].pipeline[0].params.recent as Budget;
      assert.deepEqual(recent, { [op]: terms.map((t) => t.budget) });
      assert.equal(formatPolicy(parsePolicy(source).ast), source);
      const each = terms.map((t) => resolveBudget(t.budget, n));
      const resolved = resolveBudget(recent, n);
      assert.equal(resolved, op === "max" ? Math.max(...each) : Math.min(...each));
      assert.ok(resolved >= 1 && each.includes(resolved));
    }),
    { numRuns: 500 },
  );
});
