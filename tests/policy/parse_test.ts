import assert from "node:assert/strict";
import { parsePolicy } from "../../src/policy/parse.ts";
import { shape } from "./_helpers.ts";

const ONE_LINE = "layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024, pool=7)";

Deno.test("the one-line form parses verbatim into three rules", () => {
  const { ast, diagnostics } = parsePolicy(ONE_LINE);
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(shape(ast), [
    {
      kind: "rule",
      target: {
        isElse: false,
        layers: { kind: "detector", call: { name: "lazy", args: [] } },
        heads: null,
      },
      pipeline: [{
        name: "window",
        args: [{ name: null, value: { kind: "number", value: 4, unit: "", raw: "4" } }],
      }],
    },
    {
      kind: "rule",
      target: {
        isElse: false,
        layers: null,
        heads: { kind: "detector", call: { name: "retrieval", args: [] } },
      },
      pipeline: [{ name: "full", args: [] }],
    },
    {
      kind: "rule",
      target: { isElse: true, layers: null, heads: null },
      pipeline: [{
        name: "snap",
        args: [
          { name: { text: "k" }, value: { kind: "number", value: 1024, unit: "", raw: "1024" } },
          { name: { text: "pool" }, value: { kind: "number", value: 7, unit: "", raw: "7" } },
        ],
      }],
    },
  ]);
});

Deno.test("a trailing semicolon and empty statements are allowed", () => {
  for (const src of [ONE_LINE + ";", ";;" + ONE_LINE + ";;\n", ONE_LINE.replaceAll("; ", ";\n")]) {
    const { ast, diagnostics } = parsePolicy(src);
    assert.deepEqual(diagnostics, [], src);
    assert.equal(ast.statements.length, 3);
  }
});

Deno.test("headers, constants, use imports and comments", () => {
  const src = `# leading comment
policy "razor \\"lazy\\"";
use "./my-plugin.ts"; # trailing
let budget = 4k;
else -> snap(k=budget);
`;
  const { ast, diagnostics } = parsePolicy(src, "p.kvp");
  assert.deepEqual(diagnostics, []);
  assert.equal(ast.file, "p.kvp");
  assert.deepEqual((shape(ast) as unknown[]).slice(0, 3), [
    { kind: "header", name: 'razor "lazy"' },
    { kind: "use", path: "./my-plugin.ts" },
    { kind: "constant", name: "budget", value: { kind: "number", value: 4, unit: "k", raw: "4" } },
  ]);
  assert.deepEqual(ast.comments.map((c) => [c.text, c.span.line]), [
    ["# leading comment", 1],
    ["# trailing", 3],
  ]);
});

Deno.test("selectors: indices, ranges, open ranges, lists, *, detectors with arguments, both targets", () => {
  const src =
    "layers 0..3, 7, 24.. heads 0, 1 -> full; layers * -> full; heads * -> full; layers lazy(threshold=0.6) heads retrieval(top=15%) -> full";
  const { ast, diagnostics } = parsePolicy(src);
  assert.deepEqual(diagnostics, []);
  const rules = shape(ast) as { target: unknown }[];
  assert.deepEqual(rules[0].target, {
    isElse: false,
    layers: {
      kind: "indices",
      items: [
        { start: 0, end: 3, range: true },
        { start: 7, end: 7, range: false },
        { start: 24, end: null, range: true },
      ],
    },
    heads: {
      kind: "indices",
      items: [{ start: 0, end: 0, range: false }, { start: 1, end: 1, range: false }],
    },
  });
  assert.deepEqual(rules[1].target, { isElse: false, layers: { kind: "all" }, heads: null });
  assert.deepEqual(rules[2].target, { isElse: false, layers: null, heads: { kind: "all" } });
  assert.deepEqual(rules[3].target, {
    isElse: false,
    layers: {
      kind: "detector",
      call: {
        name: "lazy",
        args: [{
          name: { text: "threshold" },
          value: { kind: "number", value: 0.6, unit: "", raw: "0.6" },
        }],
      },
    },
    heads: {
      kind: "detector",
      call: {
        name: "retrieval",
        args: [{
          name: { text: "top" },
          value: { kind: "number", value: 15, unit: "%", raw: "15" },
        }],
      },
    },
  });
});

Deno.test("values: integers, decimals, k suffix, percentages, strings, identifiers; + pipelines", () => {
  const src = 'else -> a(1, 2.5, 4k, 1.5K, 10%, "s", max, -3) + b + c 7';
  const { ast, diagnostics } = parsePolicy(src);
  assert.deepEqual(diagnostics, []);
  const [rule] = shape(ast) as { pipeline: { name: string; args: { value: unknown }[] }[] }[];
  assert.deepEqual(rule.pipeline.map((c) => c.name), ["a", "b", "c"]);
  assert.deepEqual(rule.pipeline[0].args.map((a) => a.value), [
    { kind: "number", value: 1, unit: "", raw: "1" },
    { kind: "number", value: 2.5, unit: "", raw: "2.5" },
    { kind: "number", value: 4, unit: "k", raw: "4" },
    { kind: "number", value: 1.5, unit: "k", raw: "1.5" },
    { kind: "number", value: 10, unit: "%", raw: "10" },
    { kind: "string", value: "s" },
    { kind: "name", name: "max" },
    { kind: "number", value: -3, unit: "", raw: "-3" },
  ]);
  assert.deepEqual(rule.pipeline[2].args.map((a) => a.value), [
    { kind: "number", value: 7, unit: "", raw: "7" },
  ]);
});

Deno.test("spans point at the right line and column", () => {
  const { ast } = parsePolicy('policy "p";\n\n  else -> snap(k=10%)');
  const rule = ast.statements[1];
  assert.equal(rule.kind, "rule");
  if (rule.kind !== "rule") return;
  assert.deepEqual([rule.span.line, rule.span.column], [3, 3]);
  const call = rule.pipeline[0];
  assert.deepEqual([
    call.nameSpan.line,
    call.nameSpan.column,
    call.nameSpan.end - call.nameSpan.start,
  ], [3, 11, 4]);
  assert.equal(ast.source.slice(call.span.start, call.span.end), "snap(k=10%)");
});

Deno.test("keywords are not identifiers, but identifiers may start with a keyword", () => {
  const { diagnostics } = parsePolicy("else -> layersx(elsewhere=policyname)");
  assert.deepEqual(diagnostics, []);
  const errors = parsePolicy("else -> layers").diagnostics;
  assert.equal(errors[0].message, "expected a press such as snap(k=1024) but found 'layers'");
});
