/** End-to-end tests of `check` and `fmt` through the real CLI entry point (subprocesses). */
import assert from "node:assert/strict";
import { type Finished, ROOT, runDeno, STACK_TRACE } from "./_helpers.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

function cli(...args: string[]): Promise<Finished> {
  return runDeno(["run", "--allow-read", "--allow-write", "--allow-env", MAIN, ...args]);
}

Deno.test("check: every shipped policy, by path and by name, exits 0", async () => {
  const r = await cli("check", "policies/snapkv.kvp", "razor-lazy");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /policies\/snapkv\.kvp: ok \(1 rule\)/);
  assert.match(r.stdout, /policies\/razor-lazy\.kvp: ok \(3 rules\)/);
});

Deno.test("check: inline policy text pasted from an issue works as is", async () => {
  const r = await cli(
    "check",
    "layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024, pool=7)",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "<inline>: ok (3 rules)");
});

Deno.test("check: a bad policy exits 1 with file:line:col errors and no stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/bad.kvp`;
    await Deno.writeTextFile(file, "layers lazy -> window 4;\nelse -> snp(k=1024)\n");
    const r = await cli("check", file);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`${file.replaceAll("/", "\\/")}:2:9: error: unknown press 'snp'`),
    );
    assert.match(r.stderr, /= did you mean 'snap'\?/);
    assert.doesNotMatch(r.stderr, STACK_TRACE);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check: inline errors point into the pasted text", async () => {
  const r = await cli("check", "else -> snap(k=1024, pool=0)");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^<inline>:1:27: error: snap: 'pool' must be at least 1, not 0/);
});

Deno.test("check: a literal too large for an exact integer is an error, not 1e+29", async () => {
  const r = await cli("check", "--plan", "else -> snap(k=99999999999999999999999999999);");
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    /^<inline>:1:16: error: integer 9{29} is too large \(the largest is 9007199254740991\)$/m,
  );
});

Deno.test("check --plan prints the plan as JSON, --yaml as YAML; --explain explains", async () => {
  const json = await cli("check", "--plan", "snapkv");
  assert.equal(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout);
  assert.equal(plan.name, "snapkv");
  assert.deepEqual(plan.rules[0].pipeline[0].params, {
    k: { tokens: 1024 },
    window: 32,
    pool: 7,
    reduce: "max",
  });
  const yaml = await cli("check", "--plan", "--yaml", "snapkv");
  assert.match(yaml.stdout, /^format: kvpolicy-plan\/1$/m);
  const explain = await cli("check", "--explain", "razor-lazy");
  assert.match(explain.stdout, /rule 3 \(line 7\): else -> snap\(k=1024, pool=7\)/);
  assert.match(explain.stdout, /select {2}snap\(k=1024, window=32, pool=7, reduce=max\)/);
});

Deno.test("check and fmt: max(...)/min(...) budgets in --plan, --explain, fmt and errors", async () => {
  const policy = "else->window(sink=4,recent=max(251,10%))";
  const json = await cli("check", "--plan", policy);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout).rules[0].pipeline[0].params.recent, {
    max: [{ tokens: 251 }, { fraction: 0.1 }],
  });
  const explain = await cli("check", "--explain", policy);
  assert.match(
    explain.stdout,
    /select {2}window\(sink=4, recent=max\(251, 10%\), decode=roll, rerotate=false\)/,
  );
  const formatted = await cli("fmt", policy);
  assert.equal(formatted.stdout, "else -> window(sink=4, recent=max(251, 10%));\n");
  const bad = await cli("check", "else -> snap(k=64, pool=max(3, 7))");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^<inline>:1:25: error: snap: 'pool' takes no max\(\.\.\.\)/);
  assert.doesNotMatch(bad.stderr, STACK_TRACE);
});

Deno.test("check refuses plugin imports without --allow-plugins, naming the import", async () => {
  const r = await cli("check", 'use "./x.ts"; else -> full');
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /needs plugin code \("\.\/x\.ts"\); plugins run arbitrary code, so kvpolicy loads them only with --allow-plugins/,
  );
});

Deno.test("check --allow-plugins loads local files only: no URL of any scheme or case runs", async () => {
  const lock = await Deno.readTextFile(`${ROOT}/deno.lock`).catch(() => null);
  const tries: string[][] = [
    ["check", "--allow-plugins", 'use "NPM:left-pad@1.3.0"; else -> full'],
    ["check", "--allow-plugins", 'use "HTTPS://example.com/p.ts"; else -> full'],
    ["check", "--allow-plugins", 'use "JSR:@std/path"; else -> full'],
    ["check", "--allow-plugins", 'use "data:text/javascript,Deno.exit(7)"; else -> full'],
    ["check", "--allow-plugins", "--plugin", "data:text/javascript,Deno.exit(7)", "else -> full"],
    ["check", "--allow-plugins", "--plugin", "Data:text/javascript,Deno.exit(7)", "else -> full"],
  ];
  for (const args of tries) {
    const r = await cli(...args);
    assert.equal(r.code, 1, `${args.join(" ")}\n${r.stderr}`);
    assert.match(r.stderr, /only local files load/, args.join(" "));
    assert.doesNotMatch(r.stderr, STACK_TRACE);
  }
  const after = await Deno.readTextFile(`${ROOT}/deno.lock`).catch(() => null);
  assert.equal(after, lock, "deno.lock untouched");
});

Deno.test("bad flags and missing files are user errors (exit 1)", async () => {
  const r = await cli("check", "--nope", "x");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: check: Unknown option '--nope'/);
  const missing = await cli("check", "no-such-policy");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no policy file 'no-such-policy'/);
});

Deno.test("fmt rewrites a file canonically; --check reports; inline text is printed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/p.kvp`;
    await Deno.writeTextFile(file, "layers 0..3->window 4;else->snap(k=10%) # c\n");
    assert.equal((await cli("fmt", "--check", file)).code, 1);
    const r = await cli("fmt", file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      await Deno.readTextFile(file),
      "layers 0..3 -> window(4);\nelse -> snap(k=10%); # c\n",
    );
    assert.equal((await cli("fmt", "--check", file)).code, 0);
    const inline = await cli("fmt", "else->full");
    assert.equal(inline.stdout, "else -> full;\n");
    const bad = await cli("fmt", "else -> (");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /<inline>:1:9: error/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fmt --check passes on every shipped policy", async () => {
  const files = [...Deno.readDirSync(`${ROOT}/policies`)].map((e) => `policies/${e.name}`);
  const r = await cli("fmt", "--check", ...files);
  assert.equal(r.code, 0, r.stderr);
});
