import assert from "node:assert/strict";
import { formatPolicy } from "../../src/policy/format.ts";
import { parsePolicy } from "../../src/policy/parse.ts";
import { shape } from "./_helpers.ts";

function fmt(src: string): string {
  const { ast, diagnostics } = parsePolicy(src);
  assert.deepEqual(diagnostics, []);
  return formatPolicy(ast);
}

Deno.test("the one-line form formats to one rule per line", () => {
  assert.equal(
    fmt("layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024, pool=7)"),
    "layers lazy -> window(4);\nheads retrieval -> full;\nelse -> snap(k=1024, pool=7);\n",
  );
});

Deno.test("spacing, suffixes and strings are canonical; comments and paragraph breaks are kept", () => {
  const src = `  # header comment
policy   "p";use"./x.ts" ;


let  b=4K ;
layers 0..3,7 , 24..heads 0->window( sink = 4 , recent=b )+compensate ; # trailing
# before else
else->snap( k = 10% ,reduce=max)`;
  assert.equal(
    fmt(src),
    `# header comment
policy "p";
use "./x.ts";

let b = 4k;
layers 0..3, 7, 24.. heads 0 -> window(sink=4, recent=b) + compensate; # trailing
# before else
else -> snap(k=10%, reduce=max);
`,
  );
});

Deno.test("a comment inside a statement moves above it", () => {
  assert.equal(
    fmt("else -> snap(k=1) # a\n  + quant"),
    "# a\nelse -> snap(k=1) + quant;\n",
  );
});

Deno.test("formatting is idempotent and preserves the AST", () => {
  const samples = [
    "else -> full",
    'policy "x"; let a = 1.50; layers 2.. heads * -> random(a, seed=3) + quant(bits=2); else -> window 4',
    "# only a comment",
    "",
    'else -> a("q\\"uote\\\\", -2.0)',
  ];
  for (const src of samples) {
    const once = fmt(src);
    assert.equal(fmt(once), once, src);
    assert.deepEqual(shape(parsePolicy(once).ast), shape(parsePolicy(src).ast), src);
    assert.deepEqual(
      parsePolicy(once).ast.comments.map((c) => c.text),
      parsePolicy(src).ast.comments.map((c) => c.text),
    );
  }
});
