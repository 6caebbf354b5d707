import assert from "node:assert/strict";
import { summarizeHitRates } from "../../src/eval/hitRate.ts";
import { formatDuration, ProgressLine, progressText } from "../../src/eval/progress.ts";
import { reportToJson } from "../../src/eval/report/json.ts";
import { renderSummaryTable } from "../../src/eval/report/table.ts";
import { type EvalReport, runEval } from "../../src/eval/runner.ts";
import { defaultSuite, type EvalSuite, parseTaskList } from "../../src/eval/suite.ts";
import { fakePolicies, RecencyFakeEngine, tinyNeedleTokenizer } from "./_fakeEngine.ts";
import { withProtocols } from "../../src/cli/evalCommand.ts";
import type { Plan } from "../../src/plan/plan.ts";
import type { SampleOutcome } from "../../src/eval/results.ts";

const tokenizer = await tinyNeedleTokenizer();

function smallSuite(tasks: EvalSuite["tasks"]): EvalSuite {
  return {
    ...defaultSuite("tiny-needle"),
    tasks,
    lengths: [400, 800],
    depths: [0, 50, 100],
    samples: 2,
  };
}

let cachedReport: EvalReport | undefined;
async function fullReport(): Promise<{ report: EvalReport; engine: RecencyFakeEngine }> {
  const engine = new RecencyFakeEngine(tokenizer);
  const suite = smallSuite(parseTaskList(["needle,ruler", "ppl", "hitrate"]));
  cachedReport = await runEval({ engine, policies: fakePolicies(), suite });
  return { report: cachedReport, engine };
}

Deno.test("runner: every policy runs on exactly the same samples", async () => {
  const { report, engine } = await fullReport();
  const perPolicy = engine.prompts.length / 2;
  assert.deepEqual(engine.prompts.slice(0, perPolicy), engine.prompts.slice(perPolicy));
  // needle 2×3×2 + 4 RULER tasks × 2 lengths × 2 = 28 generations per policy.
  assert.equal(perPolicy, 12 + 16);
  assert.equal(engine.calls.score, 2 * 4);
  assert.equal(engine.calls.hitRate, 2 * 4);
  assert.equal(report.outcomes.length, 2 * (28 + 4 + 4));
});

Deno.test("runner: scores follow what the fake keeps (full finds all, window only near the end)", async () => {
  const { report } = cachedReport ? { report: cachedReport } : await fullReport();
  const row = (policy: string, task: string, length: number, depth: number | null) =>
    report.results.find((r) =>
      r.policy === policy && r.task === task && r.length === length && r.depth === depth
    )!;
  for (const task of ["needle", "single_key", "multi_key", "multi_value", "variable_tracking"]) {
    for (const r of report.results.filter((r) => r.policy === "full" && r.task === task)) {
      assert.equal(r.accuracy, 1, `full ${task} ${r.length}/${r.depth}`);
      assert.equal(r.kv_ratio, 1);
    }
  }
  assert.equal(
    row("window150", "needle", 800, 100).accuracy,
    1,
    "needle right before the question",
  );
  assert.equal(row("window150", "needle", 800, 0).accuracy, 0, "needle at the start is evicted");
  assert.equal(row("window150", "needle", 800, 0).ci_low, 0);
  assert.ok(row("window150", "needle", 800, 0).ci_high! > 0.5, "2 samples: a wide interval");
  const windowRatio = row("window150", "needle", 800, 50).kv_ratio;
  assert.ok(windowRatio > 0.15 && windowRatio < 0.2, `kv ratio ${windowRatio}`);
  assert.ok(Math.abs(row("full", "ppl", 400, null).perplexity! - Math.exp(1.5)) < 1e-9);
  assert.ok(Math.abs(row("window150", "ppl", 400, null).perplexity! - Math.exp(2)) < 1e-9);
  assert.equal(row("full", "hitrate", 800, null).hit_rate, 1);
  const hit = row("window150", "hitrate", 800, null);
  assert.ok(hit.hit_rate! < 0.7 && hit.hit_rate! > 0.5);
  assert.equal(hit.hit_rate_by_layer![0], 1);
});

Deno.test("runner: JSON has one row per policy × task × cell with the documented fields", async () => {
  const { report } = cachedReport ? { report: cachedReport } : await fullReport();
  const json = JSON.parse(JSON.stringify(reportToJson(report)));
  // needle 2 lengths × 3 depths, 4 RULER tasks × 2 lengths, ppl × 2, hitrate × 2 = 18 per policy.
  assert.equal(json.results.length, 2 * 18);
  const keys = new Set(
    json.results.map((r: object) => JSON.stringify([...Object.values(r).slice(0, 4)])),
  );
  assert.equal(keys.size, json.results.length, "rows are unique per policy × task × cell");
  for (const r of json.results) {
    for (
      const field of [
        "policy",
        "task",
        "length",
        "depth",
        "accuracy",
        "samples",
        "kv_ratio",
        "ci_low",
        "ci_high",
        "decode_tok_s",
      ]
    ) {
      assert.ok(field in r, `${field} in ${JSON.stringify(r)}`);
    }
    assert.equal(r.samples, 2);
    assert.ok(r.kv_ratio > 0 && r.kv_ratio <= 1);
    if (r.task === "ppl" || r.task === "hitrate") {
      assert.equal(r.accuracy, null);
    } else {
      assert.ok(r.accuracy >= 0 && r.accuracy <= 1);
      assert.ok(r.ci_low <= r.accuracy && r.accuracy <= r.ci_high);
      assert.ok(r.decode_tok_s > 0);
    }
    assert.equal(r.depth === null, r.task !== "needle");
  }
  assert.deepEqual(json.policies.map((p: { name: string }) => p.name), ["full", "window150"]);
  assert.equal(json.suite.seed, 1234);
  assert.equal(json.query_aware, true);
  assert.equal(json.outputs.length, 2 * 28);
  assert.match(json.outputs[0].output, /^\d{7}\.$/);
});

Deno.test("runner: the terminal table has a row per policy and a column per task", async () => {
  const { report } = cachedReport ? { report: cachedReport } : await fullReport();
  const table = renderSummaryTable(report);
  const lines = table.split("\n");
  assert.match(
    lines[0],
    /^policy\s+needle\s+single_key\s+multi_key\s+multi_value\s+variable_tracking\s+ppl\s+hitrate\s+kv kept\s+decode tok\/s$/,
  );
  assert.match(lines[1], /^-+( +-+)+$/);
  assert.match(
    lines[2],
    /^full\s+1\.000\s+1\.000\s+1\.000\s+1\.000\s+1\.000\s+4\.482\s+1\.000\s+100\.0%\s+\d+\.\d$/,
  );
  assert.match(lines[3], /^window150\s+0\.\d{3}\s/);
  assert.match(table, /seed 1234, 2 samples per cell/);
});

Deno.test("runner: progress reaches the total and hitrate without engine support is refused", async () => {
  const engine = new RecencyFakeEngine(tokenizer);
  const seen: number[] = [];
  await runEval({
    engine,
    policies: fakePolicies(),
    suite: smallSuite(["single_key"]),
    onProgress: (p) => {
      assert.equal(p.total, 8);
      seen.push(p.done);
    },
  });
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8]);
  const plain = {
    tokenizer,
    modelName: "plain",
    generate: engine.generate.bind(engine),
    scoreTokens: engine.scoreTokens.bind(engine),
  };
  await assert.rejects(
    runEval({ engine: plain, policies: fakePolicies(), suite: smallSuite(["hitrate"]) }),
    /cannot measure hit rates/,
  );
  await assert.rejects(
    runEval({
      engine,
      policies: [fakePolicies()[0], fakePolicies()[0]],
      suite: smallSuite(["ppl"]),
    }),
    /two policies are named 'full'/,
  );
});

Deno.test("hit rate: matrices average per layer and overall", () => {
  const summary = summarizeHitRates([[[1, 0.5], [0, 0]], [[1, 1], [1, 0]]]);
  assert.deepEqual(summary.byLayer, [0.875, 0.25]);
  assert.equal(summary.mean, 0.5625);
  assert.ok(Number.isNaN(summarizeHitRates([]).mean));
});

Deno.test("progress: one redrawn line on a terminal, a line per 10% (and per minute) in logs", () => {
  assert.equal(formatDuration(75), "1:15");
  assert.equal(formatDuration(3725), "1:02:05");
  assert.match(
    progressText(50, 100, 10, "full needle"),
    /^eval \[#{10}\.{10}\] 50\/100 50% 5\.00\/s ETA 0:10 full needle$/,
  );
  // 40 of the 50 came from a checkpoint: 10 run in 10 s, 1/s, 50 to go.
  assert.match(progressText(50, 100, 10, "", 40), / 1\.00\/s ETA 0:50$/);
  let clock = 0;
  const terminal: string[] = [];
  const line = new ProgressLine(
    100,
    { isTerminal: true, write: (t) => terminal.push(t) },
    () => clock,
  );
  for (let i = 1; i <= 100; i++) {
    clock += 100;
    line.update(i);
  }
  line.finish();
  assert.equal(terminal.length, 101);
  assert.ok(terminal.slice(0, 100).every((t) => t.startsWith("\r") && !t.includes("\n")));
  assert.equal(terminal[100], "\n");
  const log: string[] = [];
  const logLine = new ProgressLine(
    200,
    { isTerminal: false, write: (t) => log.push(t) },
    () => clock,
  );
  for (let i = 1; i <= 200; i++) logLine.update(i);
  logLine.finish();
  assert.equal(log.length, 11, "0%, 10%, ..., 100%");
  assert.ok(log.every((t) => t.endsWith("\n") && !t.includes("\r")));
  assert.match(log[10], /200\/200 100%/);
  // A slow run: 30 s per unit of 1,000, so no decile passes in the first 100 units; a line still
  // comes every 60 s (every second unit), none in between.
  const slow: string[] = [];
  const slowLine = new ProgressLine(
    1000,
    { isTerminal: false, write: (t) => slow.push(t) },
    () => clock,
  );
  for (let i = 1; i <= 10; i++) {
    clock += 30_000;
    slowLine.update(i);
  }
  assert.deepEqual(slow.map((t) => t.match(/ (\d+)\/1000 /)?.[1]), ["1", "3", "5", "7", "9"]);
});

Deno.test("runner: --protocol both runs each policy aware and agnostic on the same prompts", async () => {
  const engine = new RecencyFakeEngine(tokenizer);
  const suite = smallSuite(parseTaskList(["needle", "ppl"]));
  const policies = withProtocols(fakePolicies(), "both");
  assert.deepEqual(policies.map((p) => p.name), [
    "full [aware]",
    "full [agnostic]",
    "window150 [aware]",
    "window150 [agnostic]",
  ]);
  const report = await runEval({ engine, policies, suite });
  // The agnostic runs split the same prompts: context (haystack) + question (the suffix).
  const aware = engine.prompts.slice(0, engine.prompts.length / 2);
  assert.equal(engine.agnostic.length, 2 * aware.length);
  engine.agnostic.slice(0, aware.length).forEach((a, i) => {
    assert.deepEqual([...a.context, ...a.questions[0]], aware[i]);
    const q = tokenizer.decode(a.questions[0], { skipSpecialTokens: true });
    assert.match(q, /^\s*Question: What is the special magic number for [a-z]+-[a-z]+\? Answer:/);
    assert.doesNotMatch(tokenizer.decode(a.context), /Question:/);
  });
  // Perplexity runs aware only; every row says its protocol.
  assert.equal(engine.calls.score, 2 * 2 * 2);
  for (const r of report.results) {
    assert.equal(r.protocol, r.policy.endsWith("[agnostic]") ? "agnostic" : "aware");
    if (r.protocol === "agnostic") assert.equal(r.task, "needle");
  }
  const json = reportToJson(report);
  assert.deepEqual(json.protocols, ["aware", "agnostic"]);
  assert.equal(json.query_aware, false);
  assert.match(renderSummaryTable(report), /both protocols \(query-aware/);
  // Agnostic with the full cache answers as aware does; the window keeps the context's end.
  const acc = (p: string) => report.results.filter((r) => r.policy === p && r.task === "needle");
  assert.deepEqual(
    acc("full [agnostic]").map((r) => r.accuracy),
    acc("full [aware]").map((r) => r.accuracy),
  );
  assert.throws(
    () => withProtocols(fakePolicies(), "AWARE"),
    /--protocol must be aware, agnostic or both/,
  );
});

/** The fake engine with `sharePrefill`: records each shared prompt and the plans that shared it. */
class SharingFakeEngine extends RecencyFakeEngine {
  readonly shared: { ids: number[]; plans: number; ran: number[] }[] = [];
  /** The prefix before the scored tokens of every perplexity request. */
  readonly scoredPrefixes: string[] = [];
  current?: { ids: number[] };
  override scoreTokens(req: { ids: number[]; plan: Plan; from: number }) {
    this.scoredPrefixes.push(String(req.ids.slice(0, req.from)));
    return super.scoreTokens(req);
  }
  async sharePrefill<T>(
    promptIds: readonly number[],
    plans: readonly Plan[],
    work: (i: number) => Promise<T>,
  ): Promise<T[]> {
    const record = { ids: [...promptIds], plans: plans.length, ran: [] as number[] };
    this.shared.push(record);
    const out: T[] = [];
    // Runs the plans last to first: the runner must not rely on the order they run in.
    for (let i = plans.length - 1; i >= 0; i--) {
      record.ran.push(i);
      out[i] = await work(i);
    }
    return out;
  }
}

Deno.test("runner: shared prefills change nothing reported; one per prompt and protocol; resumable", async () => {
  const suite = smallSuite(parseTaskList(["needle", "ppl"]));
  const policies = withProtocols([
    ...fakePolicies(),
    ...fakePolicies().map((p) => ({
      ...p,
      name: `${p.name}-again`,
    })),
  ], "both");
  const rows = (r: EvalReport) => reportToJson(r).results;
  const plain = await runEval({ engine: new RecencyFakeEngine(tokenizer), policies, suite });
  const engine = new SharingFakeEngine(tokenizer);
  const checkpoint = new Map<string, SampleOutcome>();
  const shared = await runEval({
    engine,
    policies,
    suite,
    onOutcome: (k, o) => checkpoint.set(k, o),
  });
  assert.deepEqual(rows(shared), rows(plain));
  // Needle samples: 2 lengths × 3 depths × 2 samples, each prefilled once per protocol, for
  // the four policies of that protocol; the aware prompt is whole, the agnostic one the context.
  const needles = 2 * 3 * 2;
  assert.ok(engine.shared.every((s) => s.plans === 4));
  const isPpl = (s: { ids: number[] }) => engine.scoredPrefixes.includes(String(s.ids));
  const needleShares = engine.shared.filter((s) => !isPpl(s));
  assert.equal(needleShares.length, 2 * needles);
  // Perplexity samples run under the aware protocol only: each one's prefix before the scored
  // tokens is prefilled once for the four aware policies.
  const pplShares = engine.shared.filter(isPpl);
  assert.ok(pplShares.length > 0);
  assert.equal(engine.scoredPrefixes.length, 4 * pplShares.length);
  pplShares.forEach((s, i) => assert.equal(String(s.ids), engine.scoredPrefixes[4 * i]));
  const aware = needleShares.filter((_, i) => i % 2 === 0);
  const agnostic = needleShares.filter((_, i) => i % 2 === 1);
  assert.deepEqual(
    aware.map((s) => s.ids),
    [...new Set(engine.prompts.map(String))].map((p) => p.split(",").map(Number)),
  );
  agnostic.forEach((s, i) => assert.deepEqual(s.ids, engine.agnostic[4 * i].context));
  // Resuming from part of the checkpoint runs only what is missing, and shares only that.
  const keys = [...checkpoint.keys()];
  const partial = new Map(
    keys.slice(0, Math.floor(keys.length / 3)).map((k) => [
      k,
      checkpoint.get(k)!,
    ]),
  );
  const again = new SharingFakeEngine(tokenizer);
  const resumed = await runEval({ engine: again, policies, suite, done: partial });
  assert.deepEqual(rows(resumed), rows(plain));
  const reran = again.calls.generate + again.agnostic.length + again.calls.score;
  assert.equal(reran, keys.length - partial.size);
  assert.ok(again.shared.length < engine.shared.length);
  // Switched off, nothing is shared.
  const off = new SharingFakeEngine(tokenizer);
  assert.deepEqual(
    rows(await runEval({ engine: off, policies, suite, sharePrefill: false })),
    rows(plain),
  );
  assert.equal(off.shared.length, 0);
});
