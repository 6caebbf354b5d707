/**
 * `deno task run` end to end, as subprocesses of `src/cli/main.ts run`: the `--json` object, the
 * built-in demo, `--max-new-tokens 0`, user errors (exit 1, one line, no stack trace), and
 * seeded sampling being reproducible.
 */
import assert from "node:assert/strict";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { writeRandomModel } from "./_checkpoint.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
/** A fixture without tokenizer (ids only), vocabulary 300, context 2048 or less. */
const FIXTURE = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
/** A fixture whose max_position_embeddings is 512. */
const SHORT_CONTEXT = `${SHARED_DIR}/fixtures/llama-bf16-sharded`;

/** The outcome of one CLI run. */
interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts run ...args` in a subprocess. */
async function run(...args: string[]): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", MAIN, "run", ...args],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs with `--json` and parses stdout, asserting exit 0. */
async function runJson(...args: string[]): Promise<Record<string, unknown>> {
  const r = await run("--json", ...args);
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Asserts a user error: exit 1, one `error:` line on stderr matching `pattern`, no stack. */
function assertUserError(r: CliResult, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  // the compile progress of a first run (empty shader cache) may come before the error
  const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("compiling GPU kernels"));
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  assert.equal(r.stdout, "");
}

Deno.test("cli run: --json --prompt-ids gives text, tokens, kv, timing and plan", async () => {
  const j = await runJson("--prompt-ids", "1,5,6", "--max-new-tokens", "3");
  assert.equal(typeof j.text, "string");
  assert.ok(Array.isArray(j.tokens) && j.tokens.length === 3, `tokens ${j.tokens}`);
  assert.equal(j.prompt_tokens, 3);
  const kv = j.kv as { fullLength: number; keptBytes: number; fullBytes: number };
  assert.equal(kv.fullLength, 3 + 2);
  assert.equal(kv.keptBytes, kv.fullBytes);
  const timing = j.timing as Record<string, number>;
  for (const k of ["prefillMs", "decodeMs", "ttftMs"]) assert.ok(timing[k] >= 0, k);
  assert.equal((j.plan as { name: string }).name, "full");
});

Deno.test("cli run: the demo with --json reports key, answer and found; exit 0", async () => {
  const j = await runJson("--max-new-tokens", "4");
  const demo = j.demo as { key: string; answer: string; found: boolean };
  assert.ok(demo, "demo field");
  assert.equal(typeof demo.key, "string");
  assert.match(demo.answer, /^\d{7}$/);
  assert.equal(typeof demo.found, "boolean");
  assert.equal(demo.found, (j.text as string).includes(demo.answer));
  assert.ok((j.prompt_tokens as number) > 200, "a real haystack");
});

Deno.test({
  name: "cli run: --max-new-tokens 0 succeeds with zero tokens",
  ignore: sharedMissing(),
  async fn() {
    const j = await runJson("--model", FIXTURE, "--prompt-ids", "1,2,3,4", "--max-new-tokens", "0");
    assert.deepEqual(j.tokens, []);
    assert.equal(j.text, "");
    assert.equal((j.kv as { fullLength: number }).fullLength, 4);
  },
});

Deno.test({
  name: "cli run: user errors exit 1 with one clear line and no stack trace",
  ignore: sharedMissing(),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-cli-" });
    try {
      await t.step("empty --prompt", async () => {
        assertUserError(await run("--prompt", ""), /prompt is empty/);
      });
      await t.step("invalid UTF-8 prompt file", async () => {
        const file = `${dir}/bad.txt`;
        await Deno.writeFile(file, new Uint8Array([0x41, 0xff, 0xfe, 0x42]));
        assertUserError(await run("--prompt-file", file), /not valid UTF-8/);
      });
      await t.step("token id beyond the vocabulary", async () => {
        assertUserError(
          await run("--model", FIXTURE, "--prompt-ids", "1,300"),
          /token id 300 is outside the vocabulary \(0\.\.299\)/,
        );
      });
      await t.step("prompt longer than the context", async () => {
        const ids = Array.from({ length: 600 }, (_, i) => i % 300).join(",");
        assertUserError(
          await run("--model", SHORT_CONTEXT, "--prompt-ids", ids, "--max-new-tokens", "1"),
          /exceed the model's context of 512/,
        );
      });
      await t.step("a policy the runtime does not execute yet", async () => {
        const file = `${dir}/compensate-quant.kvp`;
        await Deno.writeTextFile(file, "else -> random(k=8) + compensate + quant(bits=4);\n");
        assertUserError(
          await run("--policy", file, "--prompt-ids", "1"),
          /'compensate' cannot be combined with 'quant' yet/,
        );
      });
      await t.step("a prefill chunk below 1", async () => {
        assertUserError(
          await run("--model", FIXTURE, "--prompt-ids", "1", "--prefill-chunk", "0"),
          /--prefill-chunk expects an integer ≥ 1, not '0'/,
        );
      });
      await t.step("unknown flag", async () => {
        assertUserError(await run("--bogus"), /Unknown option '--bogus'/);
      });
      await t.step("--model without config.json", async () => {
        assertUserError(await run("--model", dir, "--prompt-ids", "1"), /config\.json/);
      });
      await t.step("a model shape the GPU runtime cannot run (head_dim 6)", async () => {
        const model = `${dir}/hd6`;
        await Deno.mkdir(model);
        await writeRandomModel(model, {
          arch: "llama",
          dtype: "F32",
          hidden: 12,
          heads: 2,
          kvHeads: 2,
          headDim: 6,
          inter: 8,
          vocab: 16,
          layers: 1,
          tied: true,
          seed: 1,
        });
        assertUserError(await run("--model", model, "--prompt-ids", "1"), /head_dim 6/);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cli run: seeded sampling is reproducible, and the seed matters",
  ignore: sharedMissing(),
  async fn() {
    const sample = async (seed: string) =>
      (await runJson(
        "--model",
        FIXTURE,
        "--prompt-ids",
        "1,17,42",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0.8",
        "--seed",
        seed,
      )).tokens as number[];
    const [a, b, c] = [await sample("3"), await sample("3"), await sample("4")];
    assert.equal(a.length, 12);
    assert.deepEqual(a, b);
    // Near-uniform logits over 300 ids: 12 draws coinciding by chance has probability ≈ 0.
    assert.notDeepEqual(a, c);
  },
});
