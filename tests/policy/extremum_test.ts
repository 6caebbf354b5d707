/**
 * `max(a, b, ...)` / `min(a, b, ...)` budgets (RazorAttention's L_h = max(S0, N/C)): parsing,
 * canonical formatting, plans, `check --explain`, and every mistake with its file:line:col.
 */
import assert from "node:assert/strict";
import { compileOrThrow, compilePolicy } from "../../src/plan/compile.ts";
import { explainPlan } from "../../src/plan/explain.ts";
import { formatParamValue } from "../../src/plugins/schema.ts";
import { renderDiagnostics } from "../../src/policy/diagnostics.ts";
import { formatPolicy } from "../../src/policy/format.ts";
import { parsePolicy } from "../../src/policy/parse.ts";
import { errorsOf, messages, shape } from "./_helpers.ts";

function fmt(src: string): string {
  const { ast, diagnostics } = parsePolicy(src);
  assert.deepEqual(diagnostics, []);
  return formatPolicy(ast);
}

/** The one error of `source` as `file:line:col: error: message`. */
function oneError(source: string): string {
  const errors = errorsOf(source);
  assert.equal(errors.length, 1, `${source}: ${messages(errors).join(" | ")}`);
  return renderDiagnostics("p.kvp", source, errors).split("\n")[0];
}

Deno.test("max/min: parsed as an extremum value; `max` alone is still a name", () => {
  const { ast, diagnostics } = parsePolicy(
    "else -> window(sink=4, recent=max(251, 10%)) + a(min(20%, 4k), reduce=max, max=min)",
  );
  assert.deepEqual(diagnostics, []);
  const [rule] = shape(ast) as { pipeline: { args: { value: unknown }[] }[] }[];
  assert.deepEqual(rule.pipeline[0].args[1].value, {
    kind: "extremum",
    op: "max",
    args: [
      { kind: "number", value: 251, unit: "", raw: "251" },
      { kind: "number", value: 10, unit: "%", raw: "10" },
    ],
  });
  assert.deepEqual(rule.pipeline[1].args.map((a) => a.value), [
    {
      kind: "extremum",
      op: "min",
      args: [
        { kind: "number", value: 20, unit: "%", raw: "20" },
        { kind: "number", value: 4, unit: "k", raw: "4" },
      ],
    },
    { kind: "name", name: "max" },
    { kind: "name", name: "min" },
  ]);
  // `max`/`min` stay names wherever a name goes: constants, presses, parameters, bare values.
  assert.deepEqual(parsePolicy("let max = 3; else -> max(min=max) + window min").diagnostics, []);
  assert.deepEqual(parsePolicy("else -> maximum(minimal=max_1)").diagnostics, []);
  // The span of the value covers `max` to `)`.
  const span = (parsePolicy("else -> w(k=max(1, 2))").ast.statements[0] as {
    pipeline: { args: { value: { span: { start: number; end: number } } }[] }[];
  }).pipeline[0].args[0].value.span;
  assert.deepEqual([span.start, span.end], [12, 21]);
});

Deno.test("max/min: snap(reduce=max) compiles exactly as before", () => {
  const plan = compileOrThrow("else -> snap(k=1024, window=32, pool=7, reduce=max)");
  assert.deepEqual(plan.rules[0].pipeline[0].params, {
    k: { tokens: 1024 },
    window: 32,
    pool: 7,
    reduce: "max",
  });
});

Deno.test("max/min: canonical formatting, round trip and idempotence", () => {
  assert.equal(
    fmt("else->window(sink=4,recent=max( 251 ,10% ))+compensate"),
    "else -> window(sink=4, recent=max(251, 10%)) + compensate;\n",
  );
  assert.equal(
    fmt("let c = MIN; else -> snap(k=min(20%,4K,3k))"),
    "let c = MIN;\nelse -> snap(k=min(20%, 4k, 3k));\n",
  );
  const samples = [
    "else -> window(sink=4, recent=max(251, 10%))",
    "let r = max(251, 5%); else -> window(recent=r) # L_h",
    "else -> snap(k=min(20%, 4k), reduce=max)",
    'else -> a(max(), min(1), max(1, min(2, 3)), max("s", x, 1.5))', // parses; checking refuses
    "else -> window max(1, 2)",
  ];
  for (const src of samples) {
    const once = fmt(src);
    assert.equal(fmt(once), once, src);
    assert.deepEqual(shape(parsePolicy(once).ast), shape(parsePolicy(src).ast), src);
  }
});

Deno.test("max/min: the plan holds {max: [...]} / {min: [...]}; explain prints it as written", () => {
  const plan = compileOrThrow(
    "heads retrieval -> full; layers 0 -> snap(k=min(20%, 4k)); else -> window(sink=4, recent=max(251, 10%))",
  );
  assert.deepEqual(plan.rules[1].pipeline[0].params.k, {
    min: [{ fraction: 0.2 }, { tokens: 4096 }],
  });
  assert.deepEqual(plan.rules[2].pipeline[0].params.recent, {
    max: [{ tokens: 251 }, { fraction: 0.1 }],
  });
  const text = explainPlan(plan);
  assert.match(
    text,
    /select {2}window\(sink=4, recent=max\(251, 10%\), decode=roll, rerotate=false\)/,
  );
  assert.match(text, /select {2}snap\(k=min\(20%, 4096\), window=32/);
  assert.equal(formatParamValue({ max: [{ tokens: 251 }, { fraction: 0.05 }] }), "max(251, 5%)");
  assert.equal(formatParamValue({ min: [{ fraction: 0.2 }, { tokens: 7 }] }), "min(20%, 7)");
  // A plan is plain data: JSON keeps it.
  assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan);
});

Deno.test("max/min: constants hold a budget or an argument of one", () => {
  const plan = compileOrThrow(
    "let s0 = 251; let r = max(s0, 10%); let cap = min(20%, 4k);\n" +
      "layers 0 -> window(sink=4, recent=r); else -> snap(k=cap)",
  );
  assert.deepEqual(plan.rules[0].pipeline[0].params.recent, {
    max: [{ tokens: 251 }, { fraction: 0.1 }],
  });
  assert.deepEqual(plan.rules[1].pipeline[0].params.k, {
    min: [{ fraction: 0.2 }, { tokens: 4096 }],
  });
  assert.deepEqual(
    compilePolicy("let s0 = 251; else -> window(recent=max(s0, 1%))").diagnostics,
    [],
  );
});

Deno.test("max/min errors: file:line:col and a clear message for each mistake", () => {
  const cases: [string, string][] = [
    [
      "else -> snap(k=max())",
      "p.kvp:1:16: error: snap: 'k': max(...) takes two or more values, but none was given",
    ],
    [
      "else -> snap(k=min(4k))",
      "p.kvp:1:16: error: snap: 'k': min(...) takes two or more values, but only one was given",
    ],
    [
      "else -> window(recent=max(251, min(10%, 4k)))",
      "p.kvp:1:32: error: window: 'recent': min(...) cannot be nested inside max(...)",
    ],
    [
      'else -> snap(k=max(1, "a"))',
      "p.kvp:1:23: error: snap: 'k' must be a whole number of cache entries or a percentage, " +
      'not the string "a"',
    ],
    [
      "else -> snap(k=max(1.5, 10%))",
      "p.kvp:1:20: error: snap: 'k' must be a whole number of cache entries or a percentage, " +
      "not '1.5'",
    ],
    [
      "else -> snap(k=max(10%, auto))",
      "p.kvp:1:25: error: snap: 'k' must be a whole number of cache entries or a percentage, " +
      "not 'auto'",
    ],
    [
      "else -> snap(k=max(1024,\n    0))",
      "p.kvp:2:5: error: snap: 'k' must keep at least 1 entry, not 0",
    ],
    [
      "else -> snap(k=min(120%, 4k))",
      "p.kvp:1:20: error: snap: 'k' must be a percentage in (0%, 100%], not '120%'",
    ],
    [
      "else -> snap(k=max(4k, 0%))",
      "p.kvp:1:24: error: snap: 'k' must be a percentage in (0%, 100%], not '0%'",
    ],
    [
      "else -> snap(k=64, pool=max(3, 7))",
      "p.kvp:1:25: error: snap: 'pool' takes no max(...): only budget parameters (cache entries " +
      "or a percentage of the prompt) take max(...) and min(...)",
    ],
    [
      "heads retrieval(induction=min(10%, 20%)) -> full; else -> full",
      "p.kvp:1:27: error: retrieval: 'induction' takes no min(...): only budget parameters " +
      "(cache entries or a percentage of the prompt) take max(...) and min(...)",
    ],
    [
      "else -> window max(251, 10%)",
      "p.kvp:1:16: error: window: 'sink' takes no max(...): only budget parameters (cache " +
      "entries or a percentage of the prompt) take max(...) and min(...)",
    ],
    [
      "let r = max(1, 10%);\nlet q = min(r, 4k); else -> snap(k=q)",
      "p.kvp:1:9: error: snap: 'k': max(...) cannot be nested inside min(...)",
    ],
  ];
  for (const [source, expected] of cases) assert.equal(oneError(source), expected, source);
  // Hints say how to write it.
  assert.equal(errorsOf("else -> snap(k=max(5))")[0].hint, "e.g. k=max(251, 10%)");
  assert.equal(
    errorsOf("else -> snap(k=64, pool=max(3, 7))")[0].hint,
    "write one value for pool, e.g. pool=1",
  );
  // A syntax error inside max(...) is reported where it is.
  assert.deepEqual(messages(errorsOf("else -> snap(k=max(1,, 2))")), [
    "1:22 expected a value (number, string or name) but found ','",
  ]);
  assert.deepEqual(messages(errorsOf("else -> snap(k=max(1, 2)")), [
    "1:24 expected ')' but found the end of the policy",
  ]);
});

Deno.test("max/min nested thousands deep: one error, no stack overflow", () => {
  const deep = (n: number) => `else -> snap(k=${"max(1, ".repeat(n)}2${")".repeat(n)});`;
  const { diagnostics } = parsePolicy(deep(20000));
  assert.deepEqual(messages(diagnostics), [
    "1:240 max(...) and min(...) cannot be nested, and here they are 33 deep; the policy was not parsed",
  ]);
  // Up to 32 deep it parses, and the checker names the first nested call.
  assert.deepEqual(messages(errorsOf(deep(32))), [
    "1:23 snap: 'k': max(...) cannot be nested inside max(...)",
  ]);
});

Deno.test("policies/razor.kvp: its commented max(S0, N/C) alternative compiles", () => {
  const text = Deno.readTextFileSync(new URL("../../policies/razor.kvp", import.meta.url));
  const alternative = text.split("\n").find((l) => l.startsWith("# else -> window("));
  assert.ok(alternative, "razor.kvp shows the max(...) form in a comment");
  const rule = alternative.slice(2);
  const source = text.replace(/^else -> .*$/m, rule);
  const plan = compileOrThrow(source, "razor.kvp");
  assert.deepEqual(plan.rules[1].pipeline[0].params.recent, {
    max: [{ tokens: 251 }, { fraction: 0.05 }],
  });
  assert.equal(plan.rules[1].pipeline[1].name, "compensate");
});
