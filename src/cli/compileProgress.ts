/**
 * The "compiling GPU kernels — first run only — 7/12" line: on a fresh machine a software adapter
 * (Mesa's llvmpipe) compiles each WGSL kernel at its first dispatch, a second or more each, and a
 * run that waited silently looked hung. The engine compiles new kernels one at a time
 * (`GpuContext.compilePending`) and reports each; this prints them on stderr once a batch has
 * taken more than {@link SHOW_AFTER_MS}: one line redrawn in place on a terminal, and on anything
 * else (a log, CI) a line when the wait starts being visible and one when the batch is done.
 * Counts add up over the batches of one command (the engine compiles prefill, decode and press
 * kernels as it first needs them).
 *
 * @module
 */

/** Compiling is shown once a batch has taken this long (ms). */
export const SHOW_AFTER_MS = 1000;

/** Where the line goes: stderr by default. */
export interface ProgressSink {
  /** Writes text as is. */
  write(text: string): void;
  /** Whether the sink is a terminal (redraw in place). */
  isTerminal: boolean;
}

const stderrSink: ProgressSink = {
  write: (text) => Deno.stderr.writeSync(new TextEncoder().encode(text)),
  get isTerminal() {
    return Deno.stderr.isTerminal();
  },
};

/** The `onCompile` callback of `EngineOptions` that prints the line on `sink`. */
export function compileProgress(
  sink: ProgressSink = stderrSink,
): (done: number, total: number, ms: number) => void {
  let before = 0; // kernels of finished batches
  let shown = false; // the current batch is visible
  return (done, total, ms) => {
    const text = `compiling GPU kernels — first run only — ${before + done}/${before + total}`;
    const finished = done >= total;
    if (!shown && ms > SHOW_AFTER_MS) {
      shown = true;
      if (!sink.isTerminal && !finished) sink.write(`${text}\n`);
    }
    if (shown && sink.isTerminal) sink.write(`\r${text}\x1b[K`);
    if (finished) {
      if (shown) {
        const tail = ` (${(ms / 1000).toFixed(1)} s)\n`;
        sink.write(sink.isTerminal ? tail : `${text}${tail}`);
      }
      before += total;
      shown = false;
    }
  };
}
