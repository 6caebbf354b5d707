import assert from "node:assert/strict";
import { UserError } from "../../src/cli/errors.ts";
import { evalCommand, type EvalCommandDeps } from "../../src/cli/evalCommand.ts";
import type { ProgressSink } from "../../src/eval/progress.ts";
import { RecencyFakeEngine, TINY_NEEDLE_DIR, tinyNeedleTokenizer } from "./_fakeEngine.ts";
import { SMOLLM2_GGUF, smollm2Missing } from "../runtime/_smollm2.ts";

const tokenizer = await tinyNeedleTokenizer();

function deps(): EvalCommandDeps & { printed: string[]; progressText: string[]; opened: string[] } {
  const printed: string[] = [];
  const progressText: string[] = [];
  const opened: string[] = [];
  const progress: ProgressSink = { isTerminal: false, write: (t) => progressText.push(t) };
  return {
    printed,
    progressText,
    opened,
    progress,
    print: (t) => printed.push(t),
    openEngine: (dir) => {
      opened.push(dir);
      return Promise.resolve(new RecencyFakeEngine(tokenizer));
    },
  };
}

const SMALL = ["--lengths", "300,500", "--depths", "0:100:50", "--samples", "1"];

Deno.test("eval command: table by default, two policies (shipped name and inline text)", async () => {
  const d = deps();
  const code = await evalCommand(
    [
      "--task",
      "needle",
      "--policy",
      "full",
      "--policy",
      "else -> window(sink=4, recent=100)",
      ...SMALL,
    ],
    d,
  );
  assert.equal(code, 0);
  assert.equal(d.opened.length, 1);
  // --task needle alone runs on the needle-demo model by default.
  assert.ok(d.opened[0].endsWith("models/planted-needle"), d.opened[0]);
  assert.equal(d.printed.length, 1);
  assert.match(d.printed[0], /^policy\s+needle\s+kv kept\s+decode tok\/s\n/);
  assert.match(d.printed[0], /\nfull\s+1\.000\s+100\.0%/);
  assert.match(d.printed[0], /\nwindow\(sink=4, recent=100\)\s+0\.\d{3}\s+/);
  assert.match(d.progressText.at(-1)!, /12\/12 100%/);
});

Deno.test("eval command: --json, comma task lists, --seed, --suite and --out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-eval-" });
  try {
    const suiteFile = `${dir}/suite.yaml`;
    await Deno.writeTextFile(
      suiteFile,
      "name: tiny\nsamples: 2\nlengths: [300]\nmulti_value: { values: 2 }\n",
    );
    const d = deps();
    const code = await evalCommand([
      "--model",
      TINY_NEEDLE_DIR,
      "--suite",
      suiteFile,
      "--task",
      "ruler,ppl",
      "--task",
      "needle",
      "--depths",
      "50",
      "--seed",
      "99",
      "--policy",
      "policies/full.kvp",
      "--out",
      `${dir}/out`,
      "--json",
    ], d);
    assert.equal(code, 0);
    const json = JSON.parse(d.printed[0]);
    assert.equal(json.suite.name, "tiny");
    assert.equal(json.suite.seed, 99);
    assert.deepEqual(json.suite.lengths, [300]);
    assert.deepEqual(json.suite.tasks, [
      "single_key",
      "multi_key",
      "multi_value",
      "variable_tracking",
      "ppl",
      "needle",
    ]);
    assert.equal(json.results.length, 6);
    assert.ok(json.results.every((r: { samples: number }) => r.samples === 2));
    const html = await Deno.readTextFile(`${dir}/out/report.html`);
    assert.match(html, /data-figure="heatmap-0"/);
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${dir}/out/results.json`)).results,
      json.results,
    );
    assert.match(d.progressText.at(-1)!, /wrote .*report\.html/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval command: user errors for bad flags, missing policies and long contexts", async () => {
  const cases: [string[], RegExp][] = [
    [["--task", "needle"], /no --policy given/],
    [["--policy", "full", "--task", "haystack"], /unknown task 'haystack'/],
    [
      ["--policy", "full", "--lengths", "16k"],
      /16384 tokens is longer than the model allows \(8192/,
    ],
    [
      ["--policy", "full", "--task", "ppl", "--lengths", "8k"],
      /8192 tokens is longer than the model allows \(4096/,
    ],
    [["--policy", "full", "--samples", "0"], /--samples expects an integer ≥ 1/],
    [["--policy", "full", "--depths", "0:100"], /start:stop:step/],
    [["--policy", "full", "--model", "/nonexistent/model"], /is not a model folder/],
    [
      ["--policy", "full", "--model", "README.md"],
      /--model: '.*README\.md' is not a model folder or GGUF file \(a model is a Hugging Face folder or a \.gguf file/,
    ],
    [
      ["--policy", "full", "--chat"],
      /--chat: the model has no chat template \(.*planted-needle\/config\.json/,
    ],
    [["--policy", "no-such-policy-file"], /no policy file/],
    [["--policy", "full", "--frobnicate"], /eval: Unknown option '--frobnicate'/],
    // grids are bounded before any prompt is built
    [
      ["--policy", "full", "--depths", "0:100:0.0000001"],
      /--depths '0:100:0.0000001' makes 1000000001 depths; at most 1001/,
    ],
    [
      ["--policy", "full", "--samples", "100000000"],
      /--samples expects an integer from 1 to 10000/,
    ],
    [["--policy", "full", "--lengths", "99999k"], /from 16 to 16384k/],
    [
      ["--policy", "full", "--task", "needle,ppl", "--depths", "0:100:1", "--samples", "10000"],
      /plans 6060000 generations \(1 policies × 2 tasks × 3 lengths × 101 depths × 10000 samples\); at most 1000000/,
    ],
  ];
  for (const [args, message] of cases) {
    const d = deps();
    await assert.rejects(evalCommand(args, d), (e: Error) => {
      assert.ok(e instanceof UserError, `${args.join(" ")}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
    assert.equal(d.opened.length, 0, "the engine is not opened for a user error");
  }
  const d = deps();
  assert.equal(await evalCommand(["--help"], d), 0);
  assert.match(d.printed[0], /--task T\s+needle, ruler/);
  assert.match(d.printed[0], /--chat\s+wrap prompts in the model's chat template/);
});

Deno.test({
  name: "eval command: a GGUF model's context length comes from its header, before loading",
  ignore: smollm2Missing(),
  async fn() {
    const d = deps();
    await assert.rejects(
      evalCommand(["--policy", "full", "--model", SMOLLM2_GGUF, "--lengths", "16k"], d),
      /16384 tokens is longer than the model allows \(8192, .*\.gguf \(GGUF metadata\)\)/,
    );
    assert.equal(d.opened.length, 0);
  },
});

Deno.test("eval command: perplexity on a text file the suite names; a missing one fails early", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-eval-ppl-" });
  try {
    const words = "the river runs past the old mill and the miller counts his sacks of grain";
    await Deno.writeTextFile(`${dir}/essay.txt`, Array(40).fill(words).join(". "));
    await Deno.writeTextFile(`${dir}/suite.yaml`, "ppl: { from: 64, text: essay.txt }\n");
    const d = deps();
    const args = ["--model", TINY_NEEDLE_DIR, "--suite", `${dir}/suite.yaml`, "--task", "ppl"];
    const code = await evalCommand(
      [...args, "--lengths", "128", "--samples", "2", "--policy", "full", "--json"],
      d,
    );
    assert.equal(code, 0);
    const json = JSON.parse(d.printed[0]);
    assert.equal(json.suite.ppl_text, `${dir}/essay.txt`);
    const [row] = json.results;
    assert.equal(row.task, "ppl");
    assert.equal(row.samples, 2);
    assert.ok(Number.isFinite(row.perplexity) && row.perplexity > 1, JSON.stringify(row));
    // The file is checked before the model opens.
    await Deno.writeTextFile(`${dir}/suite.yaml`, "ppl: { text: gone.txt }\n");
    const e = deps();
    await assert.rejects(
      () => evalCommand([...args, "--policy", "full"], e),
      (err: Error) =>
        err instanceof UserError && /ppl\.text: cannot read '.*gone\.txt'/.test(err.message),
    );
    assert.deepEqual(e.opened, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
