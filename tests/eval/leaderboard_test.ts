/**
 * The leaderboard (kvpress's protocol: methods × compression ratios × protocols) and the
 * checkpoint that makes long evaluations resumable.
 */
import assert from "node:assert/strict";
import { evalCommand, type EvalCommandDeps } from "../../src/cli/evalCommand.ts";
import { UserError } from "../../src/cli/errors.ts";
import {
  LEADERBOARD_ALL_METHODS,
  LEADERBOARD_MEASURED_METHODS,
  LEADERBOARD_METHODS,
  LEADERBOARD_RATIOS,
  leaderboardPoints,
  leaderboardPolicies,
} from "../../src/eval/leaderboard.ts";
import type { ResultRow } from "../../src/eval/results.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { checkExecutable } from "../../src/runtime/executable.ts";
import { RecencyFakeEngine, tinyNeedleTokenizer } from "./_fakeEngine.ts";

const tokenizer = await tinyNeedleTokenizer();

Deno.test("leaderboard policies: every method at every ratio compiles, runs, keeps 1 − r", () => {
  const policies = leaderboardPolicies(LEADERBOARD_ALL_METHODS, LEADERBOARD_RATIOS);
  const settings = Object.values(LEADERBOARD_MEASURED_METHODS)
    .reduce((n, m) => n + m.settings.length, 0);
  assert.equal(policies.length, Object.keys(LEADERBOARD_METHODS).length * 4 + settings);
  for (const p of policies) {
    const plan = compileOrThrow(p.text, p.name);
    checkExecutable(plan);
    assert.equal(plan.name, p.name);
  }
  const snap = policies.find((p) => p.name === "snap @0.875")!;
  assert.deepEqual(compileOrThrow(snap.text).rules[0].pipeline[0].params.k, { fraction: 0.125 });
  // H2O splits the kept half between heavy hitters and recent tokens: 25 % + 25 % at r = 0.5.
  const h2o = compileOrThrow(policies.find((p) => p.name === "h2o @0.5")!.text);
  assert.deepEqual(h2o.rules[0].pipeline[0].params.heavy, { fraction: 0.25 });
  assert.deepEqual(h2o.rules[0].pipeline[0].params.recent, { fraction: 0.25 });
  // kvpress's registry entry "expected_attention": Ada-KV budgets over Expected Attention, ε 1e-2.
  const ada = compileOrThrow(policies.find((p) => p.name === "expected-adakv @0.75")!.text);
  assert.deepEqual(ada.rules[0].pipeline.map((p) => p.name), ["expected", "adaptive"]);
  assert.equal(ada.rules[0].pipeline[0].params.eps, 0.01);
  assert.deepEqual(ada.rules[0].pipeline[0].params.k, { fraction: 0.25 });
  assert.throws(() => leaderboardPolicies(["snapp"], [0.5]), /unknown leaderboard method 'snapp'/);
  // DMS and KIVI have no budget: they run at their own settings whatever the ratios asked.
  const measured = leaderboardPolicies(["dms", "kivi"], [0.5]);
  assert.deepEqual(measured.map((p) => [p.name, p.ratio]), [
    ["dms @t=-0.78", null],
    ["dms @t=-0.74", null],
    ["dms @t=-0.69", null],
    ["dms @t=-0.64", null],
    ["kivi @8-bit", null],
    ["kivi @4-bit", null],
    ["kivi @2-bit", null],
  ]);
  const dms = compileOrThrow(measured[1].text).rules[0].pipeline;
  assert.deepEqual(dms.map((p) => p.name), ["keydiff", "dms"]);
  assert.deepEqual(dms[0].params.k, { fraction: 1 });
  assert.equal(dms[1].params.threshold, -0.74);
  assert.equal(dms[1].params.window, 128);
  const kivi = compileOrThrow(measured[6].text).rules[0].pipeline;
  assert.deepEqual([kivi[0].name, kivi[0].params.bits], ["quant", 2]);
});

Deno.test("leaderboard points: mean score and KV over a policy's generation rows, per protocol", () => {
  const row = (
    policy: string,
    protocol: "aware" | "agnostic",
    accuracy: number | null,
    kv: number,
  ) =>
    ({
      policy,
      protocol,
      task: "single_key",
      length: 1,
      depth: null,
      accuracy,
      samples: 1,
      ci_low: null,
      ci_high: null,
      kv_ratio: kv,
      decode_tok_s: null,
    }) as ResultRow;
  const rows = [
    row("snap @0.5 [aware]", "aware", 1, 0.5),
    row("snap @0.5 [aware]", "aware", 0, 0.6),
    row("snap @0.5 [agnostic]", "agnostic", 0, 0.7),
    row("snap @0.5 [aware]", "aware", null, 0.9), // perplexity: not on the board
  ];
  const [p] = leaderboardPolicies(["snap"], [0.5]);
  const points = leaderboardPoints(rows, [p], (q, proto) => `${q.name} [${proto}]`);
  assert.deepEqual(points.map((x) => [x.protocol, x.score, x.cells]), [["aware", 0.5, 2], [
    "agnostic",
    0,
    1,
  ]]);
  assert.ok(Math.abs(points[0].kvKept - 0.55) < 1e-12);
  // A measured method's point sits at the ratio it reached: 1 − its mean KV kept.
  const [kivi] = leaderboardPolicies(["kivi"], [0.5]);
  const kiviRows = [row("kivi @8-bit", "aware", 1, 0.6), row("kivi @8-bit", "aware", 0, 0.5)];
  const [point] = leaderboardPoints(kiviRows, [kivi], (q) => q.name);
  assert.equal(point.setting, "8-bit");
  assert.ok(Math.abs(point.ratio - 0.45) < 1e-12);
  assert.equal(point.score, 0.5);
});

function deps(engine: () => RecencyFakeEngine): EvalCommandDeps & { printed: string[] } {
  const printed: string[] = [];
  return {
    printed,
    print: (t) => printed.push(t),
    progress: { isTerminal: false, write: () => {} },
    openEngine: () => Promise.resolve(engine()),
  };
}

const GRID = ["--task", "needle", "--lengths", "300", "--depths", "0:100:50", "--samples", "1"];

Deno.test("eval --leaderboard: full + methods × ratios, the board in the table, JSON and HTML", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-board-" });
  try {
    const d = deps(() => new RecencyFakeEngine(tokenizer));
    const args = [
      "--leaderboard",
      "--methods",
      "snap,streaming,kivi",
      "--ratios",
      "0.25,0.75",
      ...GRID,
    ];
    assert.equal(await evalCommand([...args, "--out", `${dir}/b`], d), 0);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/b/results.json`));
    // full, 2 methods × 2 ratios and KIVI's 3 bit widths, each under both protocols.
    assert.equal(json.policies.length, 16);
    assert.deepEqual(json.protocols, ["aware", "agnostic"]);
    const points = json.leaderboard as {
      method: string;
      ratio: number;
      setting: string | null;
      protocol: string;
      score: number;
      kv_kept: number;
    }[];
    assert.equal(points.length, 16);
    // The fake keeps every entry of a quantized cache: KIVI's points sit at ratio 1 − 1 = 0.
    const kivi = points.filter((p) => p.method === "kivi");
    assert.deepEqual(kivi.map((p) => p.setting), [
      "8-bit",
      "8-bit",
      "4-bit",
      "4-bit",
      "2-bit",
      "2-bit",
    ]);
    for (const p of kivi) assert.equal(p.ratio, 1 - p.kv_kept);
    assert.ok(points.filter((p) => p.method === "snap").every((p) => p.setting === null));
    const full = points.find((p) => p.method === "full" && p.protocol === "aware")!;
    assert.equal(full.score, 1);
    // The fake remembers only the kept tail: more compression never scores more.
    for (const m of ["snap", "streaming"]) {
      const at = (r: number) =>
        points.find((p) => p.method === m && p.ratio === r && p.protocol === "aware")!;
      assert.ok(at(0.75).score <= at(0.25).score, m);
    }
    assert.match(d.printed[0], /leaderboard \(agnostic\): mean score by compression ratio/);
    assert.match(d.printed[0], /\nsnap\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}/);
    assert.match(d.printed[0], /methods without a budget, at the ratio each reached/);
    assert.match(d.printed[0], /\nkivi\s+4-bit\s+0\.000\s+\d\.\d{3}/);
    const html = await Deno.readTextFile(`${dir}/b/report.html`);
    assert.match(html, /data-figure="leaderboard-agnostic"/);
    assert.match(html, /data-figure="leaderboard-aware"/);
    assert.match(html, /<g data-method="streaming">/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --resume: an interrupted run goes on without redoing finished samples", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-resume-" });
  try {
    const args = [
      "--policy",
      "full",
      "--policy",
      "else -> snap(k=64)",
      ...GRID,
      "--out",
      `${dir}/r`,
    ];
    let calls = 0;
    // A first run that dies after 4 of its 6 samples.
    class Dying extends RecencyFakeEngine {
      override generate(...a: Parameters<RecencyFakeEngine["generate"]>) {
        if (++calls > 4) throw new Error("power cut");
        return super.generate(...a);
      }
    }
    await assert.rejects(() => evalCommand(args, deps(() => new Dying(tokenizer))), /power cut/);
    const lines = (await Deno.readTextFile(`${dir}/r/outcomes.jsonl`)).trim().split("\n");
    assert.equal(lines.length, 1 + 4);
    // A line cut short by the interruption is dropped.
    await Deno.writeTextFile(`${dir}/r/outcomes.jsonl`, '{"key": "[\\"full\\", "trunc', {
      append: true,
    });
    let resumed = 0;
    class Counting extends RecencyFakeEngine {
      override generate(...a: Parameters<RecencyFakeEngine["generate"]>) {
        resumed++;
        return super.generate(...a);
      }
    }
    const d = deps(() => new Counting(tokenizer));
    assert.equal(await evalCommand([...args, "--resume", "--json"], d), 0);
    assert.equal(resumed, 2, "only the two missing samples run");
    const json = JSON.parse(d.printed[0]);
    assert.equal(json.outputs.length, 6);
    // The same answers as a run from scratch.
    const fresh = deps(() => new RecencyFakeEngine(tokenizer));
    assert.equal(await evalCommand([...args.slice(0, -2), "--json"], fresh), 0);
    assert.deepEqual(json.results, JSON.parse(fresh.printed[0]).results);
    // A larger grid (a second sample per cell) goes on from the same checkpoint: only its new
    // cells run, and the first samples' answers are the ones already given.
    let extended = 0;
    class CountingMore extends RecencyFakeEngine {
      override generate(...a: Parameters<RecencyFakeEngine["generate"]>) {
        extended++;
        return super.generate(...a);
      }
    }
    const more = deps(() => new CountingMore(tokenizer));
    const twoSamples = [...args.slice(0, -4), "--samples", "2", ...args.slice(-2)];
    assert.equal(await evalCommand([...twoSamples, "--resume", "--json"], more), 0);
    assert.equal(extended, 6, "2 policies × 3 depths × the one new sample");
    const outputs = JSON.parse(more.printed[0]).outputs as { index: number }[];
    assert.equal(outputs.length, 12);
    assert.deepEqual(outputs.filter((o) => o.index === 0), json.outputs);
    const header = (await Deno.readTextFile(`${dir}/r/outcomes.jsonl`)).split("\n")[0];
    assert.equal(JSON.parse(header).suite.samples, 2, "the header is this run's");
    // A checkpoint of another suite (another seed: other prompts) is refused, not mixed in.
    await assert.rejects(
      () =>
        evalCommand(
          [...args, "--resume", "--seed", "99"],
          deps(() => new RecencyFakeEngine(tokenizer)),
        ),
      (e: Error) =>
        e instanceof UserError && /holds the answers of another model or suite/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --leaderboard / --resume: bad flags are clear errors before any work", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--leaderboard", "--ratios", "0.5,1.5"],
      /--ratios: '1\.5' is not a fraction of the cache to remove/,
    ],
    [["--leaderboard", "--ratios", "0.5,"], /--ratios: '' is not a fraction/],
    [["--leaderboard", "--methods", "snap,nope"], /--methods: unknown leaderboard method 'nope'/],
    [["--policy", "full", "--ratios", "0.5"], /--methods and --ratios go with --leaderboard/],
    [["--policy", "full", "--resume"], /--resume needs --out DIR/],
  ];
  for (const [args, message] of cases) {
    let opened = false;
    await assert.rejects(
      () =>
        evalCommand([...args, ...GRID], {
          ...deps(() => new RecencyFakeEngine(tokenizer)),
          openEngine: () => {
            opened = true;
            throw new Error("opened");
          },
        }),
      (e: Error) => e instanceof UserError && message.test(e.message),
      args.join(" "),
    );
    assert.equal(opened, false);
  }
});
