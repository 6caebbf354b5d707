import assert from "node:assert/strict";
import { compilePolicy } from "../../src/plan/compile.ts";
import { renderDiagnostics } from "../../src/policy/diagnostics.ts";
import { errorsOf, messages, warningsOf } from "./_helpers.ts";

function only(source: string): { text: string; hint?: string } {
  const errors = errorsOf(source);
  assert.equal(
    errors.length,
    1,
    `expected one error in ${source}, got ${messages(errors).join(" | ")}`,
  );
  return {
    text: `${errors[0].span.line}:${errors[0].span.column} ${errors[0].message}`,
    hint: errors[0].hint,
  };
}

Deno.test("rendered errors: file:line:col, the source line, the span underlined, the hint", () => {
  const src = "layers lazy -> window 4;\nelse -> snp(k=1024, pool=7)\n";
  const { diagnostics } = compilePolicy(src, "my.kvp");
  assert.equal(
    renderDiagnostics("my.kvp", src, diagnostics),
    [
      "my.kvp:2:9: error: unknown press 'snp'",
      "  |",
      "2 | else -> snp(k=1024, pool=7)",
      "  |         ^^^",
      "  = did you mean 'snap'?",
    ].join("\n"),
  );
});

Deno.test("syntax errors: exact messages", () => {
  assert.deepEqual(only("else -> snap(k=1024"), {
    text: "1:19 expected ')' but found the end of the policy",
    hint: undefined,
  });
  assert.equal(
    only("layers -> full").text,
    "1:8 expected a detector name, '*' or layer/head indices such as 0..3 but found '->'",
  );
  assert.equal(only("else snap(k=1)").text, "1:6 expected '->' but found 'snap'");
  assert.equal(
    only("layers 0 -> full\nelse -> full").text,
    "2:1 expected ';' before 'else' (statements are separated by ';')",
  );
  assert.equal(only("else -> full @").text, '1:14 unexpected character "@"');
  assert.equal(only("else -> snap(k=4kb)").text, "1:16 unknown suffix 'kb' in '4kb'");
  assert.equal(
    only("layers 1.5 -> full").text,
    "1:8 expected a non-negative integer index but found '1.5'",
  );
});

Deno.test("all errors of a file are reported in one pass", () => {
  const src =
    "layers -> full;\nelse -> snp(k=1);\nheads 0 -> snap(k=);\nlayers 0 -> window(recnt=3)";
  assert.deepEqual(messages(errorsOf(src)), [
    "1:8 expected a detector name, '*' or layer/head indices such as 0..3 but found '->'",
    "2:9 unknown press 'snp'",
    "3:19 expected a value (number, string or name) but found ')'",
    "4:1 unreachable rule: 'else' at 2:1 already matches every layer and head",
    "4:20 'window' has no parameter 'recnt'",
  ]);
});

Deno.test("unknown names get 'did you mean' suggestions", () => {
  assert.deepEqual(only("layers lazzy -> full"), {
    text: "1:8 unknown detector 'lazzy'",
    hint: "did you mean 'lazy'?",
  });
  assert.deepEqual(only("else -> window(recnt=10)"), {
    text: "1:16 'window' has no parameter 'recnt'",
    hint: "did you mean 'recent'?",
  });
  assert.deepEqual(only("else -> snap(k=1, reduce=maxx)"), {
    text: "1:26 snap: 'reduce' must be one of max, avg, not 'maxx'",
    hint: "did you mean 'max'?",
  });
  assert.equal(
    only("else -> zzzzzz").hint,
    "known presses: adakv, adaptive, chunked, chunkkv, compensate, critical, decoding, dms, expected, full, h2o, keydiff, knorm, kvzip, pyramid, quant, random, snap, tova, window",
  );
  assert.equal(
    only('use "./lastq.ts"; else -> lastq(k=4)').text,
    "1:27 unknown press 'lastq' (it may come from \"./lastq.ts\", which is not loaded)",
  );
});

Deno.test("parameters: duplicates, too many, positional after named, missing, wrong types, ranges", () => {
  assert.equal(only("else -> window(sink=4, sink=8)").text, "1:24 parameter 'sink' is given twice");
  assert.equal(only("else -> window(4, sink=8)").text, "1:19 parameter 'sink' is given twice");
  assert.equal(only("else -> full(1)").text, "1:14 'full' takes no arguments");
  assert.equal(
    only("else -> window(1, 2, roll, false, 4)").text,
    "1:35 'window' takes at most 4 arguments",
  );
  assert.equal(
    only("else -> window(sink=1, 2)").text,
    "1:24 a positional argument cannot follow a named one",
  );
  assert.deepEqual(only("else -> snap(pool=7)"), {
    text: "1:9 'snap' needs 'k' (entries kept per KV head, window included)",
    hint: "e.g. snap(k=1024)",
  });
  assert.equal(
    only("else -> snap(k=10.5)").text,
    "1:16 snap: 'k' must be a whole number of cache entries or a percentage, not '10.5'",
  );
  assert.equal(only("else -> snap(k=0)").text, "1:16 snap: 'k' must keep at least 1 entry, not 0");
  assert.equal(
    only("else -> snap(k=150%)").text,
    "1:16 snap: 'k' must be a percentage in (0%, 100%], not '150%'",
  );
  assert.equal(
    only('else -> snap(k="a")').text,
    "1:16 snap: 'k' must be a whole number of cache entries or a percentage, not the string \"a\"",
  );
  assert.equal(
    only("else -> snap(k=1, pool=0)").text,
    "1:24 snap: 'pool' must be at least 1, not 0",
  );
  assert.equal(
    only("else -> quant(bits=3)").text,
    "1:20 quant: 'bits' must be one of 2, 4, 8, not 3",
  );
  assert.equal(
    only("layers lazy(threshold=1.5) -> full; else -> full").text,
    "1:23 lazy: 'threshold' must be at most 1, not 1.5",
  );
  assert.equal(
    only("heads retrieval(echo=2) -> full; else -> full").text,
    "1:22 retrieval: 'echo' must be a fraction between 0 and 1 or a percentage, not '2'",
  );
  assert.equal(only("else -> snap(k=auto)").text, "1:16 snap: 'k' has no automatic value");
});

Deno.test("detectors in the wrong place, presses as selectors, detectors as presses", () => {
  assert.deepEqual(only("heads lazy -> full; else -> full"), {
    text: "1:7 detector 'lazy' classifies layers, not heads",
    hint: "write 'layers lazy'",
  });
  assert.equal(
    only("layers retrieval -> full; else -> full").text,
    "1:8 detector 'retrieval' classifies heads, not layers",
  );
  assert.equal(
    only("layers snap -> full; else -> full").text,
    "1:8 'snap' is a press, not a detector",
  );
  assert.equal(only("else -> lazy").text, "1:9 'lazy' is a detector, not a press");
  assert.equal(only("layers 3..1 -> full; else -> full").text, "1:8 empty range 3..1");
});

Deno.test("pipelines: one selection press, augment after select, store last", () => {
  assert.equal(
    only("else -> snap(k=1) + window").text,
    "1:21 a pipeline has one selection press, but 'snap' and 'window' both select entries",
  );
  assert.equal(
    only("else -> quant + snap(k=1)").text,
    "1:17 'snap' selects entries, so it must come first in the pipeline",
  );
  assert.equal(
    only("else -> compensate").text,
    "1:9 'compensate' needs a selection press before it",
  );
  assert.equal(
    only("else -> window + quant + compensate").text,
    "1:26 'compensate' must come before 'quant'",
  );
  assert.equal(
    only("else -> window + quant + quant").text,
    "1:26 a pipeline has one storage press ('quant' repeats it)",
  );
  assert.deepEqual(messages(warningsOf("else -> full + compensate")), [
    "1:16 'compensate' after 'full' has nothing to compensate",
  ]);
  assert.deepEqual(errorsOf("else -> window(recent=251) + compensate + quant(bits=2)"), []);
});

Deno.test("unreachable rules after else, after a catch-all, and with a repeated target", () => {
  assert.equal(
    only("else -> full; layers 0 -> full").text,
    "1:15 unreachable rule: 'else' at 1:1 already matches every layer and head",
  );
  assert.equal(
    only("layers * -> full; heads 0 -> full").text,
    "1:19 unreachable rule: 'layers *' at 1:1 already matches every layer and head",
  );
  assert.equal(
    only("layers lazy -> full; layers lazy -> window; else -> full").text,
    "1:22 unreachable rule: the rule at 1:1 has the same target 'layers lazy'",
  );
});

Deno.test("constants: substitution, duplicates, unused, and invalid values", () => {
  const { plan } = compilePolicy("let b = 4k; else -> snap(k=b)");
  assert.deepEqual(plan?.rules[0].pipeline[0].params.k, { tokens: 4096 });
  assert.equal(
    only("let b = 1; let b = 2; else -> snap(k=b)").text,
    "1:16 constant 'b' is defined twice",
  );
  assert.equal(
    only("let b = max; else -> full").text,
    "1:9 a constant's value must be a number, a string, max(...) or min(...)",
  );
  assert.deepEqual(messages(warningsOf("let b = 1; else -> full")), ["1:5 constant 'b' is unused"]);
  assert.equal(
    only('let b = "x"; else -> snap(k=b)').text,
    "1:29 snap: 'k' must be a whole number of cache entries or a percentage, not the string \"x\"",
  );
});

Deno.test("warnings: unmatched heads, no rules, duplicate header is an error", () => {
  assert.deepEqual(messages(warningsOf("layers 0 -> full")), [
    "1:1 heads matched by no rule keep the full cache",
  ]);
  assert.deepEqual(messages(warningsOf("# nothing\n")), [
    "2:1 the policy has no rules: every head keeps the full cache",
  ]);
  assert.equal(
    only('policy "a"; policy "b"; else -> full').text,
    "1:13 a policy has at most one 'policy \"name\"' header",
  );
  assert.deepEqual(compilePolicy("layers 0 -> full").plan?.unmatched, "full");
});

Deno.test("decoding: where it may go in a pipeline, each refusal at its name", () => {
  assert.equal(
    only("else -> snap(k=64) + decoding").text,
    "1:22 'decoding' needs every=N (re-apply the press) or recent=R (a ring for generated tokens)",
  );
  assert.equal(
    only("else -> snap(k=64) + decoding(every=4, recent=3)").text,
    "1:22 'decoding' takes every=N or recent=R, not both",
  );
  assert.equal(
    only("else -> window(recent=60) + decoding(recent=4)").text,
    "1:29 'window' already keeps the cache bounded while decoding",
  );
  assert.equal(
    only("else -> h2o(heavy=8, recent=8) + decoding(recent=4)").text,
    "1:34 'h2o' already keeps the cache bounded while decoding",
  );
  assert.equal(
    only("else -> snap(k=64) + decoding(recent=8) + quant").text,
    "1:43 nothing may follow 'decoding' ('quant' does): it is the pipeline's last press",
  );
  assert.equal(
    only("else -> snap(k=64) + quant + decoding(recent=3)").text,
    "1:30 'decoding' goes right after the selection press, alone with it (not with 'quant')",
  );
  assert.equal(
    only("else -> full + decoding(every=8)").text,
    "1:16 decoding(every=...) re-applies a scoring press; 'full' keeps everything",
  );
  assert.equal(
    only("else -> decoding(recent=3)").text,
    "1:9 'decoding' needs a selection press before it",
  );
});

Deno.test("chunked: placement in a pipeline and across rules, each refusal at its name", () => {
  assert.equal(
    only("else -> pyramid(k=64) + chunked(256)").text,
    "1:25 'pyramid' cannot run chunk by chunk yet (it needs the whole prompt at once)",
  );
  assert.equal(
    only("else -> full + chunked(256)").text,
    "1:16 'full' keeps everything: there is nothing to compress between chunks",
  );
  assert.equal(
    only("else -> snap(k=64) + chunked(256) + quant").text,
    "1:37 nothing may follow 'chunked' ('quant' does): it is the pipeline's last press",
  );
  assert.equal(
    only("layers 0 -> knorm(k=8) + chunked(size=128); else -> snap(k=64) + chunked(size=256)")
      .text,
    "1:66 every chunked rule uses one chunk size: 128 at 1:1, 256 here",
  );
  assert.equal(
    only("layers 0 -> window(recent=60); else -> snap(k=64) + chunked(256)").text,
    "1:13 in a chunked policy every rule is chunked or keeps 'full' ('window' would need the whole prompt cached)",
  );
  assert.equal(
    only("layers lazy -> full; else -> snap(k=64) + chunked(256)").text,
    "1:8 'lazy' reads the whole prompt's last queries: it cannot select layers in a chunked policy",
  );
});

Deno.test("rescoring presses: right after a scoring press, once; the scorer must give scores", () => {
  assert.equal(
    only("else -> chunkkv(20)").text,
    "1:9 'chunkkv' goes right after the selection press whose scores it uses",
  );
  assert.equal(
    only("else -> snap(k=10%) + quant(bits=4) + dms(threshold=0.1)").text,
    "1:39 'dms' goes right after the selection press whose scores it uses",
  );
  assert.equal(
    only("else -> snap(k=10%) + chunkkv + dms(threshold=0.1)").text,
    "1:33 a pipeline has one rescoring press ('dms' follows another)",
  );
  const noScores = only("else -> window(sink=4, recent=60) + chunkkv");
  assert.equal(noScores.text, "1:37 'window' gives no score per entry for 'chunkkv' to use");
  assert.equal(noScores.hint, "scoring presses: expected, keydiff, knorm, snap, tova");
  assert.equal(
    only("else -> keydiff(k=25%, block=128) + chunkkv").text,
    "1:37 'chunkkv' cannot use 'keydiff' here: block-wise KeyDiff re-scores each block against " +
      "its own anchor: it has no single score per position (use block=0)",
  );
  assert.equal(
    only("else -> dms(threshold=1)").text.startsWith("1:9 'dms' goes right after"),
    true,
  );
  assert.equal(
    only("else -> knorm(k=100%) + dms").text,
    "1:25 'dms' needs 'threshold' (evict entries scoring below this (on the scorer's scale))",
  );
  // What composes: a rescoring press, then augmenting and storage presses.
  for (
    const ok of [
      "else -> snap(k=25%, window=64, pool=5, reduce=avg) + chunkkv(chunk=20) + quant(bits=4)",
      "else -> keydiff(k=100%) + dms(threshold=-0.2, window=128)",
      "else -> tova(k=25%) + chunkkv",
    ]
  ) assert.deepEqual(errorsOf(ok), [], ok);
  assert.equal(
    only("else -> snap(k=25%) + chunkkv + chunked(size=1k)").text,
    "1:33 'chunked' goes right after the selection press, alone with it (not with 'chunkkv')",
  );
});

Deno.test("expected attention cannot be re-applied by chunked or decoding", () => {
  for (const tail of ["chunked(size=1k)", "decoding(every=64)"]) {
    const name = tail.split("(")[0];
    assert.equal(
      only(`else -> expected(k=25%) + ${tail}`).text,
      `1:27 'expected' models the queries of the whole prompt, recorded during one prefill: ` +
        `it cannot be re-applied by '${name}' yet`,
    );
  }
  assert.deepEqual(errorsOf("else -> expected(k=25%) + chunkkv"), []);
});

Deno.test("kvzip cannot be re-applied by chunked or decoding", () => {
  assert.equal(
    only("else -> kvzip(k=25%) + chunked(size=1k)").text,
    "1:24 'kvzip' scores by feeding the whole context again after prefill: it cannot be " +
      "re-applied by 'chunked' yet",
  );
});
