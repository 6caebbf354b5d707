/**
 * A one-line progress display for long evaluations: samples done, rate and ETA. On a terminal
 * the line is redrawn in place (`\r`); otherwise (CI logs, pipes) a line is printed every ~10 %, and
 * at least once a minute while anything advances (a 4K leaderboard's 10 % takes a quarter of an hour
 * on a CPU adapter).
 *
 * @module
 */

/** Where progress goes. */
export interface ProgressSink {
  /** Whether the sink is a terminal (redraw in place) or a log (print every ~10 %). */
  isTerminal: boolean;
  /** Writes text as is. */
  write(text: string): void;
}

/** Standard error as a progress sink. */
export function stderrSink(): ProgressSink {
  const encoder = new TextEncoder();
  return {
    isTerminal: Deno.stderr.isTerminal(),
    write(text: string) {
      const bytes = encoder.encode(text);
      let written = 0;
      while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
    },
  };
}

/** `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/**
 * The text of a progress line, e.g. `eval [#####.....] 50/100 50% 3.2/s ETA 0:16 snapkv needle`;
 * the rate and ETA count only the units run in this process, not the `resumed` ones a checkpoint
 * supplied.
 */
export function progressText(
  done: number,
  total: number,
  elapsedSeconds: number,
  label: string,
  resumed = 0,
): string {
  const fraction = total > 0 ? done / total : 1;
  const width = 20;
  const filled = Math.round(fraction * width);
  const rate = elapsedSeconds > 0 ? (done - resumed) / elapsedSeconds : 0;
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  return `eval [${bar}] ${done}/${total} ${Math.floor(fraction * 100)}% ` +
    `${rate.toFixed(rate < 10 ? 2 : 1)}/s ETA ${formatDuration(eta)}${label ? " " + label : ""}`;
}

/** Longest silence (seconds) between two progress lines in a log, while units complete. */
export const LOG_EVERY_SECONDS = 60;

/** A progress line over `total` units. */
export class ProgressLine {
  readonly #sink: ProgressSink;
  readonly #total: number;
  readonly #started: number;
  readonly #now: () => number;
  #lastDecile = -1;
  #lastLogged = -Infinity;
  #width = 0;

  /** Times from `startedAt` (default now); `now` (ms) is injectable for tests. */
  constructor(
    total: number,
    sink: ProgressSink = stderrSink(),
    now: () => number = () => performance.now(),
    startedAt: number = now(),
  ) {
    this.#sink = sink;
    this.#total = total;
    this.#now = now;
    this.#started = startedAt;
  }

  /**
   * Reports `done` units finished, `resumed` of them from a checkpoint, with a label (e.g. the
   * policy and task).
   */
  update(done: number, label = "", resumed = 0): void {
    const now = this.#now();
    const text = progressText(done, this.#total, (now - this.#started) / 1000, label, resumed);
    if (this.#sink.isTerminal) {
      this.#sink.write("\r" + text.padEnd(this.#width));
      this.#width = text.length;
      return;
    }
    const decile = this.#total > 0 ? Math.floor((done / this.#total) * 10) : 10;
    if (decile > this.#lastDecile || now - this.#lastLogged >= LOG_EVERY_SECONDS * 1000) {
      this.#lastDecile = decile;
      this.#lastLogged = now;
      this.#sink.write(text + "\n");
    }
  }

  /** Ends the line (terminal) so that later output starts on a fresh line. */
  finish(): void {
    if (this.#sink.isTerminal && this.#width > 0) this.#sink.write("\n");
  }
}
