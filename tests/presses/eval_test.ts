/** `deno task eval` end to end on the real WebGPU engine (small grids). */
import assert from "node:assert/strict";
import { evalCommand } from "../../src/cli/evalCommand.ts";
import { openEvalEngine } from "../../src/runtime/evalEngine.ts";

const PLANTED = new URL("../../models/planted-needle", import.meta.url).pathname;
const TINY = new URL("../../models/tiny-needle", import.meta.url).pathname;

async function evalJson(args: string[]): Promise<{ results: Record<string, unknown>[] }> {
  const printed: string[] = [];
  const code = await evalCommand([...args, "--json"], {
    openEngine: openEvalEngine,
    print: (t) => printed.push(t),
    progress: { write: () => {}, isTerminal: false },
  });
  assert.equal(code, 0);
  return JSON.parse(printed.join(""));
}

Deno.test("eval needle on planted-needle: full answers, a small window does not, same samples", async () => {
  const out = await evalJson([
    "--task",
    "needle",
    "--model",
    PLANTED,
    "--lengths",
    "512",
    "--depths",
    "25,75",
    "--samples",
    "1",
    "--policy",
    "full",
    "--policy",
    "else -> window(sink=4, recent=60)",
  ]);
  const byPolicy = (p: string) => out.results.filter((r) => r.policy === p);
  assert.equal(byPolicy("full").length, 2);
  for (const r of byPolicy("full")) assert.equal(r.accuracy, 1);
  for (const r of byPolicy("window(sink=4, recent=60)")) {
    assert.equal(r.accuracy, 0);
    assert.ok((r.kv_ratio as number) < 0.2);
  }
});

Deno.test("eval ppl on tiny-needle: finite perplexities, full keeps the whole cache", async () => {
  const out = await evalJson([
    "--task",
    "ppl",
    "--model",
    TINY,
    "--lengths",
    "256",
    "--samples",
    "1",
    "--policy",
    "full",
    "--policy",
    "else -> snap(k=64)",
  ]);
  assert.equal(out.results.length, 2);
  for (const r of out.results) {
    assert.ok(
      Number.isFinite(r.perplexity as number) && (r.perplexity as number) > 1,
      JSON.stringify(r),
    );
  }
  assert.equal(out.results.find((r) => r.policy === "full")!.kv_ratio, 1);
});

Deno.test("eval hitrate on tiny-needle: keeping everything hits 1, a small window less, per layer", async () => {
  const out = await evalJson([
    "--task",
    "hitrate",
    "--model",
    TINY,
    "--lengths",
    "256",
    "--samples",
    "1",
    "--policy",
    "else -> snap(k=4k)",
    "--policy",
    "else -> window(sink=4, recent=16)",
  ]);
  const all = out.results.find((r) => r.policy === "snap(k=4k)")!;
  const small = out.results.find((r) => r.policy === "window(sink=4, recent=16)")!;
  assert.equal(all.hit_rate, 1);
  assert.deepEqual(all.hit_rate_by_layer, [1, 1, 1, 1, 1, 1]);
  assert.ok((small.hit_rate as number) < 0.9, JSON.stringify(small));
  assert.equal((small.hit_rate_by_layer as number[]).length, 6);
});

Deno.test("eval --protocol both on planted-needle: SnapKV without the question in its window", async () => {
  const out = await evalJson([
    "--task",
    "needle",
    "--model",
    PLANTED,
    "--lengths",
    "512",
    "--depths",
    "25,75",
    "--samples",
    "1",
    "--policy",
    "full",
    "--policy",
    "else -> snap(k=64, pool=21)",
    "--protocol",
    "both",
  ]) as unknown as { results: Record<string, unknown>[]; protocols: string[] };
  assert.deepEqual(out.protocols, ["aware", "agnostic"]);
  const rows = (p: string) => out.results.filter((r) => r.policy === p);
  // The full cache answers under both protocols: the question appended to the cache works.
  for (const p of ["full [aware]", "full [agnostic]"]) {
    assert.equal(rows(p).length, 2);
    for (const r of rows(p)) assert.equal(r.accuracy, 1, p);
  }
  // Query-aware SnapKV finds the needle (the question's queries point at it); compressed
  // without the question, its observation window (filler text) does not.
  for (const r of rows("snap(k=64, pool=21) [aware]")) assert.equal(r.accuracy, 1);
  for (const r of rows("snap(k=64, pool=21) [agnostic]")) {
    assert.equal(r.protocol, "agnostic");
    assert.equal(r.accuracy, 0);
  }
});
