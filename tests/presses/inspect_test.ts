/** `deno task inspect` end to end: scores on the terminal, kept tokens as HTML, trace as JSON. */
import assert from "node:assert/strict";
import { main } from "../../src/cli/main.ts";

Deno.test("inspect writes the kept-token view and the trace for the demo prompt", async () => {
  const out = await Deno.makeTempDir();
  const logs: string[] = [];
  const log = console.log, err = console.error;
  console.log = (...a: unknown[]) => logs.push(a.join(" "));
  console.error = () => {};
  try {
    const code = await main([
      "inspect",
      "--policy",
      "layers lazy(recent=64) -> window(sink=4, recent=64); else -> snap(k=64, pool=21)",
      "--out",
      out,
    ]);
    assert.equal(code, 0);
    const html = Deno.readTextFileSync(`${out}/kept.html`);
    const trace = JSON.parse(Deno.readTextFileSync(`${out}/trace.json`));
    // planted-needle: layers 0, 2, 3 lazy (window), layer 1 SnapKV.
    assert.deepEqual(trace.trace.map((l: { lazy: boolean }) => l.lazy), [true, false, true, true]);
    assert.equal(trace.trace[1].heads[0].kept.length, 64);
    assert.equal((html.match(/<details/g) ?? []).length, 4 * 2);
    assert.match(
      html,
      /layer 1 · KV head 0 · snap\(k=64, window=32, pool=21, reduce=max\) · kept 64\/\d+/,
    );
    assert.ok((html.match(/class="k"/g) ?? []).length >= 4 * 64);
    assert.match(logs.join("\n"), /layer {2}lazy score/);
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("check --explain --model prints the resolved layer × KV head table", async () => {
  const logs: string[] = [];
  const log = console.log, err = console.error;
  console.log = (...a: unknown[]) => logs.push(a.join(" "));
  console.error = () => {};
  try {
    const code = await main([
      "check",
      "--explain",
      "--model",
      "models/planted-needle",
      "layers lazy(recent=64) -> window(sink=4, recent=64); heads 1 -> full; else -> snap(k=64, pool=21)",
    ]);
    assert.equal(code, 0);
    const text = logs.join("\n");
    assert.match(text, /^0\s+lazy 1\.00 ✓\s+r1 window 64 → 67\s+r1 window 64 → 67$/m);
    assert.match(text, /^1\s+lazy 0\.\d\d\s+r3 snap 64 → 64\s+r2 full → \d+$/m);
    assert.match(text, /^r3: else -> snap\(k=64, pool=21\)$/m);
  } finally {
    console.log = log;
    console.error = err;
  }
});

Deno.test("inspect plots the retrieval scores per KV head (planted-needle: head 1.0 first)", async () => {
  const out = await Deno.makeTempDir();
  const log = console.log, err = console.error;
  console.log = () => {};
  console.error = () => {};
  try {
    assert.equal(await main(["inspect", "--policy", "duo", "--out", out]), 0);
    const html = Deno.readTextFileSync(`${out}/kept.html`);
    assert.match(html, /<svg [^>]*data-figure="detectors"/);
    const trace = JSON.parse(Deno.readTextFileSync(`${out}/trace.json`)).trace;
    const scores = trace.flatMap((l: { heads: { retrieval_score: number }[] }, i: number) =>
      l.heads.map((h, k) => ({ at: `${i}.${k}`, s: h.retrieval_score }))
    ).sort((a: { s: number }, b: { s: number }) => b.s - a.s);
    assert.equal(scores[0].at, "1.0");
    assert.ok(scores[0].s > 0.99);
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("run --allow-plugins executes the example press; without the flag it is refused", async () => {
  const policy = 'use "./examples/lastQueryPress.ts"; else -> lastq(k=64)';
  const logs: string[] = [];
  const errs: string[] = [];
  const log = console.log, err = console.error;
  console.log = (...a: unknown[]) => logs.push(a.join(" "));
  console.error = (...a: unknown[]) => errs.push(a.join(" "));
  try {
    assert.equal(await main(["run", "--policy", policy, "--json"]), 1);
    assert.match(errs.join("\n"), /needs plugin code \("\.\/examples\/lastQueryPress\.ts"\)/);
    assert.equal(
      await main(["run", "--allow-plugins", "--policy", policy, "--json", "--trace"]),
      0,
    );
    const out = JSON.parse(logs.at(-1)!);
    for (const layer of out.trace.layers) {
      for (const head of layer.heads) assert.equal(head.kept.length, 64);
    }
    // Each KV head chooses for itself (the built-in tova shares one set per layer).
    assert.ok(
      out.trace.layers.some((l: { heads: { kept: number[] }[] }) =>
        JSON.stringify(l.heads[0].kept) !== JSON.stringify(l.heads[1].kept)
      ),
    );
    assert.equal(out.resolved[0][0].pipeline, "lastq");
  } finally {
    console.log = log;
    console.error = err;
  }
});
