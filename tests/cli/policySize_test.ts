/**
 * Big policies through the real CLI: 5,000 rules check (about 0.6 s here, 23 s before the front end
 * became linear; measured, not asserted), and
 * a policy over the 1 MiB limit is refused by `check`, `fmt` and `run` with one short error.
 */
import assert from "node:assert/strict";
import { runDeno, STACK_TRACE } from "./_helpers.ts";

function task(name: string, ...args: string[]) {
  return runDeno(["task", "-q", name, ...args], { XDG_RUNTIME_DIR: "/tmp" });
}

/** Runs `fn` with a fresh temporary folder. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check: 5,000 rules are checked (timings live in benchmarks, not tests)", () =>
  inTempDir(async (dir) => {
    const file = `${dir}/many.kvp`;
    const rules = Array.from({ length: 5_000 }, (_, i) => `layers ${i} -> snap(k=64, pool=7);`);
    await Deno.writeTextFile(file, `${rules.join("\n")}\nelse -> full;\n`);
    const r = await task("check", file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${file}: ok (5001 rules)`);
  }));

Deno.test("check, fmt and run refuse a policy over 1 MiB with one short error", () =>
  inTempDir(async (dir) => {
    const file = `${dir}/huge.kvp`;
    await Deno.writeTextFile(file, `else -> full; # ${"x".repeat(1024 * 1024)}\n`);
    const runs = [
      await task("check", file),
      await task("fmt", "--check", file),
      // A policy error comes before the model is opened (this model folder does not exist).
      await task("run", "--policy", file, "--model", "/nonexistent-kvpolicy-model"),
    ];
    for (const r of runs) {
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      assert.match(
        r.stderr,
        /huge\.kvp:1:1: error: policy too large: 1048593 characters, over the limit of 1048576 characters \(1 MiB\)/,
      );
      assert.ok(r.stderr.length < 2000, `${r.stderr.length} characters of error output`);
    }
  }));
