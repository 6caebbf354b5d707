import assert from "node:assert/strict";
import { argmax } from "../../src/gpu/kernels/argmax.ts";
import { sample } from "../../src/gpu/kernels/sample.ts";
import { pcgHash, samplerUniform } from "../../src/gpu/prng.ts";
import {
  createSamplerState,
  readSampledIds,
  readSamplerState,
} from "../../src/gpu/samplerState.ts";
import { runOps } from "../../src/gpu/op.ts";
import { gpuTest } from "./_gpu.ts";
import { randomF32, rng } from "./_reference.ts";

/** Reference: temperature, top-k (ties kept), top-p (smallest top set), walk in index order. */
function refSample(logits: Float32Array, t: number, k: number, p: number, u: number): number {
  const invT = Math.fround(1 / t);
  const z = Array.from(logits, (l) => Math.fround(l * invT));
  const ok = z.map((x) => !Number.isNaN(x));
  const sorted = z.filter((_, i) => ok[i]).sort((a, b) => b - a);
  const zmax = sorted[0];
  let th = k > 0 && k <= sorted.length ? sorted[k - 1] : -Infinity; // k beyond the numbers: all
  const w = z.map((x) => Math.exp(x - zmax));
  const mass = (t: number) => z.reduce((s, x, i) => s + (ok[i] && x >= t ? w[i] : 0), 0);
  if (p < 1) {
    const zk = mass(th);
    for (const c of sorted) {
      if (c < th) break;
      if (mass(c) >= p * zk) {
        th = c;
        break;
      }
    }
  }
  const total = mass(th);
  let acc = 0;
  for (let i = 0; i < z.length; i++) {
    if (ok[i] && z[i] >= th) {
      acc += w[i];
      if (acc > u * total) return i;
    }
  }
  return z.findLastIndex((x, i) => ok[i] && x >= th);
}

gpuTest("argmax: lowest id on ties, NaN ignored, appends ids and advances state", async (ctx) => {
  const V = 1001;
  const logits = new Float32Array(V).fill(-5);
  logits[700] = 3;
  logits[333] = 3;
  logits[10] = NaN;
  const L = ctx.upload(logits);
  const s = createSamplerState(ctx, { token: 1, position: 17, idsCapacity: 8 });
  const op = argmax(ctx, { logits: L, vocabSize: V, sampler: s });
  for (const [i, v] of [[333, 4], [900, 9]]) {
    ctx.write(L, i * 4, new Float32Array([v]));
    runOps(ctx, [op]);
  }
  op.destroy();
  assert.deepEqual(await readSampledIds(ctx, s, 0, 2), [333, 900]);
  assert.deepEqual(await readSamplerState(ctx, s), { token: 900, step: 2, position: 19 });
});

gpuTest("sample: seeded temperature/top-k/top-p matches the TypeScript reference", async (ctx) => {
  assert.equal(pcgHash(0), 129708002);
  const rand = rng(77);
  const V = 777;
  const settings: Array<[number, number, number]> = [
    [1, 0, 1],
    [0.7, 40, 1],
    [1.3, 0, 0.9],
    [0.8, 50, 0.8],
    [1, 1, 1],
    [1, V - 1, 1], // k beyond the numbers (two logits are NaN): all numbers kept
    [0.9, 3, 0.5],
    [1, 0, 0.3],
  ];
  for (const [t, k, p] of settings) {
    const logits = randomF32(rand, V, 4);
    logits[5] = logits[6] = NaN;
    // ties, some of them at the top, and a few equal negatives
    for (const i of [17, 300, 301]) logits[i] = 9;
    for (const i of [40, 41, 42, 600]) logits[i] = -1.5;
    const L = ctx.upload(logits);
    const s = createSamplerState(ctx, { token: 0, position: 0, idsCapacity: 16 });
    const seed = 2 ** 40 + 12345;
    const op = sample(ctx, {
      logits: L,
      vocabSize: V,
      sampler: s,
      temperature: t,
      topK: k,
      topP: p,
      seed,
    });
    const steps = 12;
    runOps(ctx, Array(steps).fill(op));
    const got = await readSampledIds(ctx, s, 0, steps);
    op.destroy();
    const want = Array.from(
      { length: steps },
      (_, i) => refSample(logits, t, k, p, samplerUniform(seed, i)),
    );
    assert.deepEqual(got, want, `T=${t} k=${k} p=${p}`);
    // top-1 keeps only the largest logit (the three tied at 9 here)
    if (k === 1) assert.ok(got.every((id) => logits[id] === 9), `${got}`);
  }
});
