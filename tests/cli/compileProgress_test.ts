/**
 * The "compiling GPU kernels — first run only — n/N" line (`src/cli/compileProgress.ts`), and
 * README's main command printing it on a first run (an empty Mesa shader cache).
 */
import assert from "node:assert/strict";
import { compileProgress, type ProgressSink } from "../../src/cli/compileProgress.ts";
import { runDeno, STACK_TRACE } from "./_helpers.ts";

function sink(isTerminal: boolean): ProgressSink & { text: string } {
  return {
    text: "",
    isTerminal,
    write(t: string) {
      this.text += t;
    },
  };
}

const LINE = "compiling GPU kernels — first run only — ";

Deno.test("compileProgress: a batch under a second prints nothing", () => {
  for (const terminal of [true, false]) {
    const s = sink(terminal);
    const report = compileProgress(s);
    report(1, 3, 200);
    report(2, 3, 500);
    report(3, 3, 900);
    assert.equal(s.text, "");
  }
});

Deno.test("compileProgress: not a terminal — a line when it shows, one when done, counts add up", () => {
  const s = sink(false);
  const report = compileProgress(s);
  report(1, 2, 300);
  report(2, 2, 400); // a fast first batch: silent, but counted
  report(1, 4, 800);
  report(2, 4, 1500);
  report(3, 4, 2100);
  report(4, 4, 2600);
  assert.equal(s.text, `${LINE}4/6\n${LINE}6/6 (2.6 s)\n`);
});

Deno.test("compileProgress: a terminal — one line redrawn in place, ended with the time", () => {
  const s = sink(true);
  const report = compileProgress(s);
  report(1, 3, 1200);
  report(2, 3, 1900);
  report(3, 3, 2500);
  assert.equal(
    s.text,
    `\r${LINE}1/3\x1b[K\r${LINE}2/3\x1b[K\r${LINE}3/3\x1b[K (2.5 s)\n`,
  );
});

// Mesa's software adapter (llvmpipe) is where compiling takes seconds and the cache can be emptied.
const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
const LLVMPIPE = adapter?.info.isFallbackAdapter === true ||
  /llvmpipe/i.test(adapter?.info.description ?? "");
if (!LLVMPIPE) console.warn("SKIP: no llvmpipe adapter; the cold-cache progress test is ignored.");

Deno.test({
  name: "README's main command with an empty shader cache shows the compile progress on stderr",
  ignore: !LLVMPIPE,
  fn: async () => {
    const cache = await Deno.makeTempDir({ prefix: "kvpolicy-cold-cache-" });
    try {
      const r = await runDeno(["task", "-q", "run", "--policy", "else -> snap(k=64, pool=21)"], {
        MESA_SHADER_CACHE_DIR: cache,
        XDG_RUNTIME_DIR: "/tmp",
      });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
      // stderr is not a terminal here: a line when the wait shows, one with the time when done
      assert.match(r.stderr, /^compiling GPU kernels — first run only — (\d+)\/\1 \(\d+\.\d s\)$/m);
      assert.match(r.stdout + r.stderr, /demo: the answer 9792168 came back\./);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});
