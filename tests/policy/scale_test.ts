/**
 * The front end scales linearly and refuses oversize input: span lookups, diagnostic rendering,
 * the size limit, long string literals, and one parse per `check` / `run`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { policyLexer } from "../../grammar/lexer.ts";
import { policyImports } from "../../src/cli/policyLoader.ts";
import { compilePolicy } from "../../src/plan/compile.ts";
import { LineIndex, renderDiagnostics, spanAt } from "../../src/policy/diagnostics.ts";
import { MAX_POLICY_CHARS, parsePolicy } from "../../src/policy/parse.ts";

/** `n` distinct layer rules and a catch-all, one per line. */
function manyRules(n: number): string {
  const rules = Array.from({ length: n }, (_, i) => `layers ${i} -> snap(k=64, pool=7);`);
  return `${rules.join("\n")}\nelse -> full;\n`;
}

Deno.test("a policy over the size limit is refused before lexing, naming the limit", () => {
  const lexed = policyLexer.tokenize;
  let lexCalls = 0;
  policyLexer.tokenize = (text, mode) => (lexCalls++, lexed.call(policyLexer, text, mode));
  try {
    const source = "else -> full;\n".padEnd(MAX_POLICY_CHARS + 1, " ");
    const result = compilePolicy(source, "big.kvp");
    assert.equal(lexCalls, 0);
    assert.equal(result.plan, null);
    assert.equal(result.diagnostics.length, 1);
    const [d] = result.diagnostics;
    assert.equal(d.severity, "error");
    assert.match(d.message, /policy too large: 1048577 characters/);
    assert.match(d.message, /limit of 1048576 characters \(1 MiB\)/);
    // Far over the limit, the error renders from the first line alone, however many follow.
    const huge = `else -> full;${"\n".repeat(16 * 1024 * 1024)}`;
    const rendered = renderDiagnostics("huge.kvp", huge, compilePolicy(huge).diagnostics);
    assert.match(rendered, /^huge\.kvp:1:1: error: policy too large: 16777229 characters/);
    assert.ok(rendered.length < 1000, rendered);
    // Exactly at the limit is fine.
    const atLimit = "else -> full;\n".padEnd(MAX_POLICY_CHARS, " ");
    assert.ok(compilePolicy(atLimit).plan);
  } finally {
    policyLexer.tokenize = lexed;
  }
});

Deno.test("a 900 KB string literal parses, and the lexer scans 10 MB ones without recursion", () => {
  const name = "n".repeat(900_000);
  const parsed = parsePolicy(`policy "${name}";\nelse -> full;`);
  assert.deepEqual(parsed.diagnostics, []);
  const header = parsed.ast.statements[0];
  assert.ok(header.kind === "header" && header.name === name);
  // The lexer itself has no size limit; a backtracking regex overflowed the stack here.
  for (const body of ["a".repeat(10_000_000), "\\n".repeat(5_000_000)]) {
    const lexed = policyLexer.tokenize(`"${body}"`);
    assert.deepEqual(lexed.errors, []);
    assert.equal(lexed.tokens.length, 1);
    assert.equal(lexed.tokens[0].image.length, body.length + 2);
  }
});

Deno.test('string tokens are exactly the documented pattern ("..." with \\ escapes)', () => {
  const documented = /"(?:[^"\\\n\r]|\\.)*"/y;
  const char = fc.constantFrom('"', "\\", "\n", "\r", "a", " ", "\u2028", "é", "\ud83d");
  fc.assert(
    fc.property(fc.array(char, { maxLength: 12 }), (chars) => {
      const text = `"${chars.join("")}`;
      documented.lastIndex = 0;
      const expected = documented.exec(text)?.[0];
      const first = policyLexer.tokenize(text).tokens[0];
      if (expected === undefined) {
        assert.ok(first === undefined || first.startOffset > 0, JSON.stringify(text));
      } else {
        assert.equal(first?.tokenType.name, "StringLiteral", JSON.stringify(text));
        assert.equal(first.image, expected);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("LineIndex gives the same spans as spanAt", () => {
  const source = fc.array(fc.constantFrom("a", "\n", "\r", " "), { maxLength: 40 })
    .map((chars) => chars.join(""));
  fc.assert(
    fc.property(source, fc.nat(50), fc.nat(5), (text, start, length) => {
      const index = new LineIndex(text);
      assert.deepEqual(index.span(start, start + length), spanAt(text, start, start + length));
    }),
  );
});

Deno.test("check and run lex and parse a policy once (the `use` scan reuses the parse)", () => {
  const lexed = policyLexer.tokenize;
  let lexCalls = 0;
  policyLexer.tokenize = (text, mode) => (lexCalls++, lexed.call(policyLexer, text, mode));
  try {
    const text = `${manyRules(3)}# ${crypto.randomUUID()}\n`;
    assert.deepEqual(policyImports(text), []); // what registryFor does first
    const result = compilePolicy(text, "p.kvp"); // then loadPolicy / check compile it
    assert.ok(result.plan);
    assert.equal(result.ast.file, "p.kvp");
    assert.equal(lexCalls, 1);
  } finally {
    policyLexer.tokenize = lexed;
  }
});

Deno.test("many diagnostics on one long line render a bounded excerpt each, and a count", () => {
  const source = "else -> snp(k=1); ".repeat(2_000); // one 36 KB line, thousands of errors
  const { diagnostics } = compilePolicy(source, "long.kvp");
  assert.ok(diagnostics.length > 2_000);
  const text = renderDiagnostics("long.kvp", source, diagnostics);
  assert.ok(text.length < 500_000, `${text.length} characters rendered`);
  assert.match(text, /long\.kvp: \d+ more diagnostics not shown$/);
  // Each excerpt keeps the caret under the reported name, also far along the line.
  const blocks = text.split("\n\n").filter((b) => b.includes("unknown press 'snp'"));
  assert.ok(blocks.some((b) => /^long\.kvp:1:\d{4,}:/.test(b)));
  for (const block of blocks) {
    const [, , line, underline] = block.split("\n");
    const at = underline.indexOf("^");
    assert.equal(line.slice(at, at + 3), "snp", block);
    assert.ok(line.length < 200, block);
  }
});
