/**
 * Named outputs through the tasks (their own permissions): a path a task may not write, or one of
 * the wrong kind, is refused before any work starts; a model folder is never written.
 */
import assert from "node:assert/strict";
import { modelHash } from "../../src/runtime/modelHash.ts";
import { PROFILE_FILE, profilePath } from "../../src/runtime/retrievalProfile.ts";
import { ROOT, runDeno, STACK_TRACE } from "./_helpers.ts";

const PLANTED = "models/planted-needle";

async function filesOf(dir: string): Promise<string> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const info = await Deno.stat(`${dir}/${e.name}`);
    out.push(`${e.name} ${info.size} ${info.mtime?.getTime()}`);
  }
  return out.sort().join("\n");
}

Deno.test("eval, inspect and bench refuse an --out their task may not write, before any work", async () => {
  const elsewhere = await Deno.makeTempDir({ prefix: "kvpolicy-elsewhere-" });
  try {
    const cases: [string[], RegExp][] = [
      [
        [
          "eval",
          "--task",
          "needle",
          "--model",
          PLANTED,
          "--lengths",
          "512",
          "--policy",
          "full",
          "--out",
          elsewhere,
        ],
        /eval --out '.*': the eval task writes only under out\/ \(choose --out out\/NAME\)/,
      ],
      [
        ["inspect", "--policy", "snapkv", "--out", `${elsewhere}/x`],
        /inspect --out '.*\/x': the inspect task writes only under out\//,
      ],
      [
        ["bench", "--quick", "--out", `${elsewhere}/r.md`],
        /bench --out '.*r\.md': the bench task writes only under bench\//,
      ],
    ];
    for (const [args, message] of cases) {
      const started = performance.now();
      const r = await runDeno(["task", "-q", ...args]);
      assert.equal(r.code, 1, `${args.join(" ")}\n${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      assert.doesNotMatch(r.stderr, /compiling GPU kernels/, "refused before the model opened");
      assert.ok(performance.now() - started < 30_000, `${args[0]} refused late`);
    }
    assert.deepEqual([...Deno.readDirSync(elsewhere)], [], "nothing written there");
  } finally {
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("bench --model naming no model is refused before the random-weight shapes run", async () => {
  const r = await runDeno(["task", "-q", "bench", "--quick", "--model", "no/such/model"]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /no\/such\/model/);
  assert.doesNotMatch(r.stderr, STACK_TRACE);
  assert.doesNotMatch(r.stderr, /compiling GPU kernels|tok\/s/, "refused before any benchmark");
});

Deno.test("eval --out naming a file, or a link, is refused before the run", async () => {
  await Deno.mkdir(`${ROOT}/out`, { recursive: true });
  const file = await Deno.makeTempFile({ dir: `${ROOT}/out`, prefix: "not-a-folder-" });
  const link = `${file}.link`;
  await Deno.symlink("/tmp", link);
  try {
    const base = ["task", "-q", "eval", "--task", "needle", "--policy", "full", "--out"];
    const a = await runDeno([...base, `out/${file.split("/").at(-1)}`]);
    assert.equal(a.code, 1, a.stderr);
    assert.match(a.stderr, /eval --out '.*' exists and is not a folder/);
    const b = await runDeno([...base, `out/${link.split("/").at(-1)}`]);
    assert.equal(b.code, 1, b.stderr);
    assert.match(b.stderr, /eval --out '.*' is a link; name a folder/);
    assert.doesNotMatch(a.stderr + b.stderr, STACK_TRACE);
  } finally {
    await Deno.remove(file);
    await Deno.remove(link);
  }
});

Deno.test("eval with a retrieval policy caches its profile in .cache/, never in the model folder; a rerun says what it replaces", async () => {
  // planted-needle without its shipped profile, so that the probe runs and its result is cached
  const model = await Deno.makeTempDir({ prefix: "kvpolicy-model-" });
  const out = `out/outputs-test-${crypto.randomUUID().slice(0, 8)}`;
  let profile: string | undefined;
  try {
    for (const e of Deno.readDirSync(`${ROOT}/${PLANTED}`)) {
      if (e.isFile && e.name !== PROFILE_FILE) {
        await Deno.copyFile(`${ROOT}/${PLANTED}/${e.name}`, `${model}/${e.name}`);
      }
    }
    const before = await filesOf(model);
    profile = profilePath(await modelHash(model), `${ROOT}/.cache`);
    await Deno.remove(profile).catch(() => {});
    const args = [
      "task",
      "-q",
      "eval",
      "--task",
      "needle",
      "--model",
      model,
      "--lengths",
      "512",
      "--depths",
      "50",
      "--samples",
      "1",
      "--policy",
      "heads retrieval -> full; else -> window(sink=4, recent=60)",
      "--out",
      out,
    ];
    const first = await runDeno(args);
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stderr, /will be replaced|could not cache/);
    assert.equal(await filesOf(model), before, "the model folder is unchanged");
    assert.match(await Deno.readTextFile(profile), /model_hash: /, "the profile is in .cache/");
    const second = await runDeno(args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stderr,
      /eval: report\.html, results\.json and outcomes\.jsonl in .* will be replaced/,
    );
  } finally {
    await Deno.remove(model, { recursive: true });
    if (profile) await Deno.remove(profile).catch(() => {});
    await Deno.remove(`${ROOT}/${out}`, { recursive: true }).catch(() => {});
  }
});
