/**
 * Wall-clock time of a policy's press phases after prefill, for the benchmark's overhead columns:
 * reading scores back from the GPU (observation votes or windows, keys, column sums), the CPU
 * work in between (detectors, scoring, top-k selection), and encoding the compaction and
 * quantisation (their GPU work finishes in the engine's sync after the press).
 *
 * @module
 */

/** Milliseconds per press phase of one `apply`. */
export interface PressTiming {
  /** GPU → CPU readbacks of what the presses score. */
  readMs: number;
  /** CPU time: detectors, scoring, selection (everything not read or compaction). */
  selectMs: number;
  /** Encoding and submitting compaction / quantisation (GPU execution not included). */
  compactMs: number;
}

/** Accumulates {@link PressTiming} phases from its creation to {@link PressClock.done}. */
export class PressClock {
  #start = performance.now();
  #read = 0;
  #compact = 0;

  /** Runs a readback, counting its time as reading. */
  async read<T>(f: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await f();
    } finally {
      this.#read += performance.now() - t;
    }
  }

  /** Runs compaction encoding, counting its time as compaction. */
  compact<T>(f: () => T): T {
    const t = performance.now();
    try {
      return f();
    } finally {
      this.#compact += performance.now() - t;
    }
  }

  /** The phases so far; selection is the rest of the elapsed time. */
  done(): PressTiming {
    const total = performance.now() - this.#start;
    return {
      readMs: this.#read,
      selectMs: Math.max(0, total - this.#read - this.#compact),
      compactMs: this.#compact,
    };
  }
}
