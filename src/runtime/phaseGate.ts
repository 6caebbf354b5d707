/**
 * A first-come, first-served lock over the device, so that several generations alive at once run
 * their phases one at a time (prefill with its press; each decode batch) in turns. The benchmark
 * uses it to decode every policy right after the others on a shared machine, instead of minutes
 * apart with whole prefills in between, so that a slow minute lands on every policy alike.
 *
 * @module
 */

/** FIFO lock: each {@link PhaseGate.acquire} resolves in call order once the previous holder releases. */
export class PhaseGate {
  #tail: Promise<void> = Promise.resolve();

  /**
   * Waits for the turn of this caller and resolves with the function that ends it. Calling the
   * release function more than once has no further effect.
   */
  acquire(): Promise<() => void> {
    let open!: () => void;
    const mine = new Promise<void>((resolve) => open = resolve);
    const before = this.#tail;
    this.#tail = mine;
    return before.then(() => {
      let released = false;
      return () => {
        if (!released) {
          released = true;
          open();
        }
      };
    });
  }
}

/** Runs `f` while holding `gate` (no gate: just runs it). */
export async function withPhase<T>(gate: PhaseGate | undefined, f: () => Promise<T>): Promise<T> {
  const release = await gate?.acquire();
  try {
    return await f();
  } finally {
    release?.();
  }
}

/** One participant's hold on an optional gate: take and give back turns, idempotently. */
export class GateTurn {
  #gate: PhaseGate | undefined;
  #release: (() => void) | undefined;

  /** A participant of `gate` (none: every call returns at once). */
  constructor(gate?: PhaseGate) {
    this.#gate = gate;
  }

  /**
   * Waits for a turn unless this participant holds one already (or has no gate); says whether it
   * began a new turn.
   */
  async take(): Promise<boolean> {
    if (!this.#gate || this.#release) return false;
    this.#release = await this.#gate.acquire();
    return true;
  }

  /** Ends the turn held, if any. */
  give(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }
}
