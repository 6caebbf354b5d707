/**
 * The GPU runtime against the float64 CPU reference on one prompt: logits at every prompt
 * position within 1e-4 of the logit range, then greedy ids equal up to the first step whose
 * reference top-2 margin is within noise (1e-3 of the range).
 *
 * @module
 */

import assert from "node:assert/strict";
import { argmax, CpuReferenceModel } from "../../src/model/cpuReference.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import { maxAbsDiff, range } from "./_helpers.ts";

/** Options of {@link assertMatchesCpuReference}. */
export interface CpuCompareOptions {
  /** Greedy steps generated and compared. */
  steps: number;
  /** Prefill chunk for both the logits and the generation (default: the engine's). */
  chunk?: number;
  /** Decode steps per read-back (default: the engine's). */
  readEvery?: number;
}

/** Asserts the comparison above; returns how many greedy steps were comparable. */
export async function assertMatchesCpuReference(
  engine: Engine,
  prompt: number[],
  o: CpuCompareOptions,
): Promise<number> {
  const cpu = new CpuReferenceModel(engine.weights);
  const expected = cpu.forward(prompt);
  const actual = await engine.promptLogits(prompt, o.chunk);
  assert.equal(actual.length, prompt.length);
  const scale = Math.max(...expected.map(range));
  assert.ok(scale > 0.1, `logit range ${scale}: the random model is not degenerate`);
  actual.forEach((row, pos) => {
    const d = maxAbsDiff(row, expected[pos]);
    assert.ok(d <= 1e-4 * scale, `position ${pos}: ${d} > 1e-4 × range ${scale}`);
  });

  // Greedy: compare ids up to the first step whose reference margin is within noise.
  const ids: number[] = [];
  let row = expected.at(-1)!;
  let comparable = o.steps;
  for (let i = 0; i < o.steps; i++) {
    const sorted = [...row].sort((a, b) => b - a);
    if (sorted[0] - sorted[1] < 1e-3 * scale && comparable === o.steps) comparable = i;
    ids.push(argmax(row));
    if (i < o.steps - 1) [row] = cpu.forward([ids[i]]);
  }
  const r = await engine.generate({
    promptIds: prompt,
    maxNewTokens: o.steps,
    stopIds: [],
    ...(o.chunk !== undefined && { prefillChunk: o.chunk }),
    ...(o.readEvery !== undefined && { readEvery: o.readEvery }),
  });
  assert.deepEqual(r.tokens.slice(0, comparable), ids.slice(0, comparable));
  return comparable;
}
