/** The "compiling GPU kernels — first run only — n/N" line (`src/cli/compileProgress.ts`). */
import assert from "node:assert/strict";
import { compileProgress, type ProgressSink } from "../../src/cli/compileProgress.ts";

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
