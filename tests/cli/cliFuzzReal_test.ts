/**
 * `run` end to end on the GPU with generated flag values at and past the edges of what it
 * accepts (sampling, prompt ids at the vocabulary's edge, prefill chunk sizes, KV dtype, shipped
 * policies), on the planted-needle model, in process: each case exits 0 or 1 with no trace and no
 * internal error, and an accepted one generates at most `--max-new-tokens` ids inside the
 * vocabulary with a KV report that adds up. The companion of `cliFuzz_test.ts`, whose cases stop
 * before the device.
 */
import assert from "node:assert/strict";
import { main } from "../../src/cli/main.ts";
import { Rand } from "./_cliCases.ts";
import { GPU_AVAILABLE } from "../gpu/_gpu.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MODEL = `${ROOT}models/planted-needle`;
const VOCAB = 2048;
const CASES = 16;

function generateRun(r: Rand): string[] {
  const args = ["run", "--model", MODEL, "--json"];
  const maxNew = r.pick(["0", "1", "3"]);
  args.push("--max-new-tokens", maxNew);
  const ids = Array.from(
    { length: r.between(1, 40) },
    () =>
      r.chance(0.05) ? r.pick([VOCAB, 4294967295, -1]) : r.pick([0, 1, 2, r.between(3, VOCAB - 1)]),
  );
  args.push("--prompt-ids", ids.join(","));
  const optional: [string, string[]][] = [
    ["--temperature", ["0", "0.001", "0.7", "100"]],
    ["--top-p", ["0.001", "0.5", "1"]],
    ["--top-k", ["0", "1", "4294967295"]],
    ["--seed", ["0", "9007199254740991"]],
    ["--prefill-chunk", ["1", "7", "100000"]],
    ["--kv-dtype", ["f32", "f16"]],
    ["--policy", [
      `${ROOT}policies/snapkv.kvp`,
      `${ROOT}policies/streaming.kvp`,
      `${ROOT}policies/h2o.kvp`,
      `${ROOT}policies/quant4.kvp`,
      "else -> window(sink=1, recent=2)",
    ]],
  ];
  for (const [flag, values] of optional) if (r.chance(0.5)) args.push(flag, r.pick(values));
  return args;
}

Deno.test({
  name: `cli fuzz on the GPU: ${CASES} generated run command lines on planted-needle`,
  ignore: !GPU_AVAILABLE,
  async fn() {
    const { log, error, warn } = console;
    let stdout = "", stderr = "";
    console.log = (...xs: unknown[]) => stdout += xs.join(" ") + "\n";
    console.error = console.warn = (...xs: unknown[]) => stderr += xs.join(" ") + "\n";
    const rand = new Rand(21);
    let accepted = 0;
    try {
      for (let i = 0; i < CASES; i++) {
        const args = generateRun(rand);
        stdout = stderr = "";
        const code = await main(args);
        const show = `case ${i}: ${JSON.stringify(args)} → exit ${code}\n${stderr}`;
        assert.ok(code === 0 || code === 1, show);
        assert.doesNotMatch(stderr, /internal error|^\s+at .*:\d+:\d+/m, show);
        const ids = args[args.indexOf("--prompt-ids") + 1].split(",").map(Number);
        const badIds = ids.some((id) => id < 0 || id >= VOCAB);
        assert.equal(code, badIds ? 1 : 0, show);
        if (code !== 0) continue;
        accepted++;
        const out = JSON.parse(stdout);
        const maxNew = Number(args[args.indexOf("--max-new-tokens") + 1]);
        assert.ok(out.tokens.length <= maxNew, show);
        assert.ok(out.tokens.every((t: number) => Number.isInteger(t) && t >= 0 && t < VOCAB));
        assert.equal(out.prompt_tokens, ids.length, show);
        const kept = out.kv.layers.flatMap((l: { bytes: number[] }) => l.bytes)
          .reduce((a: number, b: number) => a + b, 0);
        assert.equal(kept, out.kv.keptBytes, show);
      }
    } finally {
      Object.assign(console, { log, error, warn });
    }
    assert.ok(accepted >= CASES / 2, `${accepted} of ${CASES} accepted`);
  },
});
