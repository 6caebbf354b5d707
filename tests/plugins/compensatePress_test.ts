/** RazorAttention compensation token: means of the dropped entries and the ln N_d bias. */
import assert from "node:assert/strict";
import { compensationToken } from "../../src/plugins/compensatePress.ts";
import { lcg } from "./_inputs.ts";

Deno.test("compensate: hand-computed means and biases", () => {
  // 5 entries of dim 2; keep 0 and 4, drop 1, 2, 3.
  const keys = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const values = [0, 0, 1, -1, 2, -2, 6, 3, 9, 9];
  const counted = compensationToken(keys, values, 2, [4, 0], "count")!;
  assert.deepEqual(Array.from(counted.key), [5, 6]);
  assert.deepEqual(Array.from(counted.value), [3, 0]);
  assert.equal(counted.count, 3);
  assert.equal(counted.logBias, Math.log(3));
  const plain = compensationToken(keys, values, 2, [0, 4], "plain")!;
  assert.equal(plain.logBias, 0);
  assert.deepEqual(Array.from(plain.key), [5, 6]);
  // One dropped entry: the token is that entry, bias ln 1 = 0.
  const single = compensationToken(keys, values, 2, [0, 1, 2, 4], "count")!;
  assert.deepEqual([Array.from(single.key), single.count, single.logBias], [[7, 8], 1, 0]);
  assert.equal(compensationToken(keys, values, 2, [0, 1, 2, 3, 4], "count"), null);
  assert.throws(() => compensationToken(keys, values, 2, [5], "count"), /outside/);
});

Deno.test("compensate: count weighting reproduces attention over identical dropped keys", () => {
  // If all dropped keys are equal, softmax over (kept ∪ {token with +ln N_d}) equals the exact
  // attention over kept ∪ dropped, and the output too when dropped values are averaged.
  const rand = lcg(5);
  const d = 4, n = 12;
  const shared = Array.from({ length: d }, () => rand() * 2 - 1);
  const keys: number[] = [], values: number[] = [];
  const kept = [0, 1, 10, 11];
  for (let t = 0; t < n; t++) {
    keys.push(...(kept.includes(t) ? Array.from({ length: d }, () => rand() * 2 - 1) : shared));
    values.push(...Array.from({ length: d }, () => rand() * 2 - 1));
  }
  const token = compensationToken(keys, values, d, kept, "count")!;
  const query = Array.from({ length: d }, () => rand() * 2 - 1);
  const logit = (k: ArrayLike<number>, offset: number) => {
    let dot = 0;
    for (let c = 0; c < d; c++) dot += query[c] * k[offset + c];
    return dot / Math.sqrt(d);
  };
  const attend = (entries: { logit: number; value: ArrayLike<number>; at: number }[]) => {
    const weights = entries.map((e) => Math.exp(e.logit));
    const total = weights.reduce((a, b) => a + b, 0);
    const out = new Array(d).fill(0);
    entries.forEach((e, i) => {
      for (let c = 0; c < d; c++) out[c] += (weights[i] / total) * e.value[e.at + c];
    });
    return out;
  };
  const full = attend(
    Array.from({ length: n }, (_, t) => ({ logit: logit(keys, t * d), value: values, at: t * d })),
  );
  const compressed = attend([
    ...kept.map((t) => ({ logit: logit(keys, t * d), value: values, at: t * d })),
    { logit: logit(token.key, 0) + token.logBias, value: token.value, at: 0 },
  ]);
  full.forEach((x, c) => assert.ok(Math.abs(x - compressed[c]) < 1e-6));
});
