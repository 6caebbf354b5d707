/**
 * `run` refuses bad flags and stray arguments with a one-line user error before it opens a model
 * (so these tests need no GPU): arguments it would otherwise ignore, sampling settings the GPU
 * sampler cannot represent.
 */
import assert from "node:assert/strict";
import { runDeno, STACK_TRACE } from "./_helpers.ts";

/**
 * `deno task -q run ARGS` on a model folder that does not exist: a flag that is not refused
 * first fails on the model instead (quickly, and with a different message).
 */
function run(...args: string[]) {
  return runDeno(["task", "-q", "run", ...args, "--model", "/nonexistent-kvpolicy-model"]);
}

const CASES: { args: string[]; error: RegExp }[] = [
  {
    args: ["else -> snap(k=64)"],
    error: /^error: run: unexpected argument 'else -> snap\(k=64\)'; .*--policy 'else -> snap/m,
  },
  { args: ["--policy", "full", "extra"], error: /^error: run: unexpected argument 'extra'/m },
  {
    args: ["--temperature", "1e-300"],
    error: /^error: --temperature must be 0 \(greedy decoding\) or at least 0\.001, not '1e-300'/m,
  },
  { args: ["--temperature=-1"], error: /^error: --temperature must be 0 .* not '-1'/m },
  { args: ["--top-p", "1e-300"], error: /^error: --top-p must be from 0\.001 to 1, not '1e-300'/m },
  { args: ["--top-p", "0"], error: /^error: --top-p must be from 0\.001 to 1, not '0'/m },
  {
    args: ["--seed", "99999999999999999999"],
    error: /^error: --seed expects an integer from 0 to 9007199254740991, not '9{20}'/m,
  },
  {
    args: ["--top-k", "4294967296"],
    error: /^error: --top-k expects an integer from 0 to 4294967295, not '4294967296'/m,
  },
];

for (const { args, error } of CASES) {
  Deno.test(`run ${args.join(" ")}: a user error before the model loads`, async () => {
    const r = await run(...args);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.match(r.stderr, error);
    assert.equal(r.code, 1, r.stderr);
  });
}
