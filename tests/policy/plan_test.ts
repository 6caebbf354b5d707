import assert from "node:assert/strict";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { compileOrThrow, compilePolicy, sourceHash } from "../../src/plan/compile.ts";
import { PolicyError } from "../../src/policy/diagnostics.ts";
import { BUILTIN_PLUGINS, defaultRegistry } from "../../src/plugins/builtins.ts";
import { PluginRegistry } from "../../src/plugins/registry.ts";

Deno.test("the plan holds typed, defaulted parameters, detectors and the source hash", () => {
  const src =
    'policy "demo";\nlayers lazy -> window 4; heads retrieval(top=15%) -> full; else -> snap(k=10%) + quant';
  const plan = compileOrThrow(src);
  assert.equal(plan.format, "kvpolicy-plan/1");
  assert.equal(plan.name, "demo");
  assert.equal(plan.sourceHash, sourceHash(src));
  assert.match(plan.sourceHash, /^sha256:[0-9a-f]{64}$/);
  assert.deepEqual(plan.detectors, [
    { name: "lazy", params: { threshold: null, sink: 4, recent: null, at: "decode", queries: 32 } },
    { name: "retrieval", params: { induction: 0.14, echo: 0.01, top: 0.15 } },
  ]);
  assert.deepEqual(plan.rules.map((r) => r.text), [
    "layers lazy -> window(4)",
    "heads retrieval(top=15%) -> full",
    "else -> snap(k=10%) + quant",
  ]);
  assert.deepEqual(plan.rules[0].pipeline, [
    {
      name: "window",
      role: "select",
      when: "prefill", // SimLayerKV: a lazy layer's window is cut once, then grows
      params: { sink: 4, recent: { tokens: 2000 }, decode: "grow", rerotate: false },
    },
  ]);
  assert.deepEqual(plan.rules[2].pipeline, [
    {
      name: "snap",
      role: "select",
      when: "prefill",
      params: { k: { fraction: 0.1 }, window: 32, pool: 7, reduce: "max" },
    },
    {
      name: "quant",
      role: "store",
      when: "bounded",
      params: {
        bits: 4,
        group: 32,
        residual: 32,
        kbits: null,
        vbits: null,
      },
    },
  ]);
  assert.equal(plan.rules[2].isElse, true);
  assert.deepEqual(plan.rules[1].heads, {
    kind: "detector",
    detector: { name: "retrieval", params: { induction: 0.14, echo: 0.01, top: 0.15 } },
  });
});

Deno.test("budgets: counts, k suffixes and percentages", () => {
  const k = (v: string) => compileOrThrow(`else -> snap(k=${v})`).rules[0].pipeline[0].params.k;
  assert.deepEqual(k("1024"), { tokens: 1024 });
  assert.deepEqual(k("4k"), { tokens: 4096 });
  assert.deepEqual(k("1.5k"), { tokens: 1536 });
  assert.deepEqual(k("12.5%"), { fraction: 0.125 });
});

Deno.test("the plan is plain data: JSON and YAML round-trip it exactly", () => {
  const plan = compileOrThrow(
    Deno.readTextFileSync(new URL("../../policies/razor-lazy.kvp", import.meta.url)),
  );
  assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan);
  assert.deepEqual(parseYaml(toYaml(plan)), plan);
});

Deno.test("the same source gives the same plan; a different source a different hash", () => {
  const a = compileOrThrow("else -> snap(k=1024)");
  assert.deepEqual(compileOrThrow("else -> snap(k=1024)"), a);
  assert.notEqual(compileOrThrow("else -> snap(k=1024);").sourceHash, a.sourceHash);
});

Deno.test("errors give no plan, and compileOrThrow raises a PolicyError with every diagnostic", () => {
  assert.equal(compilePolicy("else -> nope").plan, null);
  assert.throws(() => compileOrThrow("else -> nope; layers x -> y", "f.kvp"), (e) => {
    assert.ok(e instanceof PolicyError);
    assert.equal(e.diagnostics.filter((d) => d.severity === "error").length, 4);
    assert.match(e.message, /^f\.kvp:1:9: error: unknown press 'nope'/);
    return true;
  });
});

Deno.test("the registry: every built-in of DESIGN.md is registered with its schema", () => {
  const r = defaultRegistry();
  assert.deepEqual(r.pressNames(), [
    "adakv",
    "adaptive",
    "chunked",
    "chunkkv",
    "compensate",
    "critical",
    "decoding",
    "dms",
    "expected",
    "full",
    "h2o",
    "keydiff",
    "knorm",
    "kvzip",
    "pyramid",
    "quant",
    "random",
    "snap",
    "tova",
    "window",
  ]);
  assert.deepEqual(r.detectorNames(), ["duo", "lazy", "retrieval"]);
  assert.deepEqual(r.press("snap")?.params.map((p) => [p.name, p.default]), [
    ["k", undefined],
    ["window", 32],
    ["pool", 7],
    ["reduce", "max"],
  ]);
  assert.deepEqual(r.press("pyramid")?.params.map((p) => [p.name, p.default]), [
    ["k", undefined],
    ["beta", 20],
    ["window", 32],
    ["pool", 7],
    ["schedule", "official"],
  ]);
  assert.deepEqual(r.press("quant")?.params.map((p) => [p.name, p.default]), [
    ["bits", 4],
    ["group", 32],
    ["residual", 32],
    ["kbits", null],
    ["vbits", null],
  ]);
  assert.equal(BUILTIN_PLUGINS.length, 23);
  assert.throws(() => r.register(BUILTIN_PLUGINS[0]), /already registered/);
});

Deno.test("a third-party plugin registered on a registry is checked like a built-in", () => {
  const r = new PluginRegistry();
  r.register({
    kind: "press",
    name: "lastq",
    role: "select",
    when: "bounded",
    params: [{ name: "k", type: { kind: "budget" }, doc: "entries kept" }],
    doc: "the last query's attention",
  });
  assert.deepEqual(compileOrThrow("else -> lastq(256)", "<x>", r).rules[0].pipeline[0].params, {
    k: { tokens: 256 },
  });
  assert.equal(compilePolicy("else -> snap(k=1)", "<x>", r).plan, null);
});
