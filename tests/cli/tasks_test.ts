/**
 * The deno.json tasks run exactly as the README shows (`deno task -q fmt policies/*.kvp`), so each
 * command gets only the permissions its task line grants: `fmt` must work without --allow-env.
 */
import assert from "node:assert/strict";
import { type Finished, ROOT, runDeno, STACK_TRACE } from "./_helpers.ts";

/** Runs `deno task -q NAME ARGS` as a user would, XDG_RUNTIME_DIR set as on a desktop. */
function task(name: string, ...args: string[]): Promise<Finished> {
  return runDeno(["task", "-q", name, ...args], { XDG_RUNTIME_DIR: "/tmp" });
}

/** `policies/*.kvp`, as the shell expands it. */
const SHIPPED = [...Deno.readDirSync(`${ROOT}/policies`)]
  .map((e) => e.name)
  .filter((name) => name.endsWith(".kvp"))
  .sort()
  .map((name) => `policies/${name}`);

Deno.test("task fmt --check policies/*.kvp exits 0 without env permission", async () => {
  const r = await task("fmt", "--check", ...SHIPPED);
  assert.doesNotMatch(r.stderr, STACK_TRACE);
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("task fmt rewrites a policy file in place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const canonical = await Deno.readTextFile(`${ROOT}/policies/razor-lazy.kvp`);
    const file = `${dir}/razor-lazy.kvp`;
    await Deno.writeTextFile(
      file,
      canonical.replaceAll(" -> ", "->").replaceAll(", pool", ",pool"),
    );
    const r = await task("fmt", file);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `formatted ${file}\n`);
    assert.equal(await Deno.readTextFile(file), canonical);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("task fmt reports a user error (exit 1) without env permission", async () => {
  const r = await task("fmt", "no-such-policy");
  assert.doesNotMatch(r.stderr, STACK_TRACE);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^error: no policy file 'no-such-policy'/m);
});

Deno.test("task check policies/*.kvp exits 0", async () => {
  const r = await task("check", ...SHIPPED);
  assert.doesNotMatch(r.stderr, STACK_TRACE);
  assert.equal(r.code, 0, r.stderr);
  for (const file of SHIPPED) assert.match(r.stdout, new RegExp(`^${file}: ok `, "m"));
});

Deno.test("task setup names the models it knows when given another, exit 1, nothing downloaded", async () => {
  const r = await task("setup", "llama-70b");
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr,
    /error: unknown model 'llama-70b': choose one of smollm2-135m-instruct, gemma-3-270m/,
  );
  assert.doesNotMatch(r.stdout + r.stderr, STACK_TRACE);
  assert.doesNotMatch(r.stderr, /pip download/);
  const usage = await task("setup", "--help");
  assert.equal(usage.code, 0);
  assert.match(usage.stdout, /gemma-3-270m +Google's Gemma-3-270M/);
});
