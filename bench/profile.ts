/**
 * Per-kernel profile of prefill and one decode step:
 * `deno run -A bench/profile.ts [--model DIR | --shape small|small-mha|1b] [--prefill 1024,2048]
 * [--decode 1024,4096] [--chunk N] [--synthetic | --policy TEXT]` (`--synthetic`: decode
 * contexts of zero rows instead of a prefill, see {@link profileDecode}; `--policy`: the decode
 * step after that policy compressed the prefilled cache; `--prefill ''` profiles no prefill).
 *
 * Every op of the forward pass is recorded in its own compute pass with `timestampWrites`
 * (Vulkan adapters; GL has no pass timestamps), so the times are the GPU's own, in context, with
 * the real cache contents. Ops are grouped by label with layer numbers removed.
 *
 * @module
 */

import type { GpuContext } from "../src/gpu/device.ts";
import { argmax } from "../src/gpu/kernels/argmax.ts";
import type { GpuOp } from "../src/gpu/op.ts";
import { createSamplerState } from "../src/gpu/samplerState.ts";
import { Engine } from "../src/runtime/engine.ts";
import {
  createActivations,
  destroySteps,
  forwardSteps,
  releaseActivations,
  type Step,
} from "../src/runtime/forwardPass.ts";
import { RaggedKvCache } from "../src/runtime/raggedKvCache.ts";
import { compileOrThrow } from "../src/plan/compile.ts";
import { planExecutor } from "../src/runtime/planGeneration.ts";
import { randomModel } from "./randomModel.ts";
import { parseFlags } from "../src/cli/args.ts";

/** Milliseconds per op group. */
export type Profile = Map<string, { ms: number; count: number }>;

function group(label: string): string {
  return label.replace(/(model\.)?layers\.\d+\./g, "").replace(/#\d+/g, "");
}

/** Records `steps` with a timestamp pair per op, submits, and adds the GPU times to `into`. */
export async function timeSteps(ctx: GpuContext, steps: Step[], into: Profile): Promise<number> {
  const ops = steps.filter((s): s is GpuOp => !("copy" in s));
  const qs = ctx.device.createQuerySet({ type: "timestamp", count: 2 * ops.length });
  const resolve = ctx.device.createBuffer({
    size: 16 * ops.length,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const enc = ctx.device.createCommandEncoder();
  let i = 0;
  for (const s of steps) {
    if ("copy" in s) {
      enc.copyBufferToBuffer(...s.copy);
      continue;
    }
    const pass = enc.beginComputePass({
      timestampWrites: {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
    s.encode(pass);
    pass.end();
    i++;
  }
  enc.resolveQuerySet(qs, 0, 2 * ops.length, resolve, 0);
  const t0 = performance.now();
  ctx.device.queue.submit([enc.finish()]);
  const read = ctx.createBuffer(16 * ops.length);
  const e2 = ctx.device.createCommandEncoder();
  e2.copyBufferToBuffer(resolve, 0, read, 0, 16 * ops.length);
  ctx.device.queue.submit([e2.finish()]);
  const ts = new BigUint64Array(await ctx.read(read));
  const wall = performance.now() - t0;
  ops.forEach((op, j) => {
    const ms = Number(ts[2 * j + 1] - ts[2 * j]) / 1e6;
    const g = group(op.label);
    const e = into.get(g) ?? { ms: 0, count: 0 };
    e.ms += ms;
    e.count++;
    into.set(g, e);
  });
  ctx.release(read);
  resolve.destroy();
  qs.destroy();
  return wall;
}

/** Profiles prefilling `n` tokens in chunks of `chunk`. */
export async function profilePrefill(engine: Engine, n: number, chunk: number): Promise<Profile> {
  const ctx = engine.ctx, c = engine.config;
  const cache = new RaggedKvCache(ctx, c, n + 1);
  const acts = createActivations(ctx, engine.gpu, Math.min(chunk, n), 1);
  const prof: Profile = new Map();
  const prepared = new Map<number, Step[]>();
  for (let s = 0; s < n; s += chunk) {
    const m = Math.min(chunk, n - s);
    ctx.device.queue.writeBuffer(
      acts.ids,
      0,
      Uint32Array.from({ length: m }, (_, j) => ((s + j) * 7919 + 13) % c.vocabSize),
    );
    ctx.device.queue.writeBuffer(
      acts.positions,
      0,
      Uint32Array.from({ length: m }, (_, j) => s + j),
    );
    let steps = prepared.get(m);
    if (!steps) {
      steps = forwardSteps(ctx, engine.gpu, cache.layers, acts, {
        m,
        mode: "prefill",
        logits: "last",
        source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
      });
      prepared.set(m, steps);
    }
    await timeSteps(ctx, steps, prof);
  }
  for (const st of prepared.values()) destroySteps(st);
  releaseActivations(ctx, acts);
  cache.release();
  return prof;
}

/**
 * Profiles `steps` decode steps after a context of `n` tokens (average per step). With
 * `synthetic`, the context is `n` zero rows written as lengths only, not a prefill: a decode
 * step's time does not depend on the cached values, and a 16K prefill takes minutes here.
 */
export async function profileDecode(
  engine: Engine,
  n: number,
  steps = 4,
  synthetic = false,
  policy?: string,
): Promise<Profile> {
  const ctx = engine.ctx, c = engine.config;
  const cache = new RaggedKvCache(ctx, c, n + steps + 1);
  const ids = Array.from({ length: n }, (_, j) => (j * 7919 + 13) % c.vocabSize);
  if (synthetic) {
    const lengths = new Uint32Array(c.numKvHeads).fill(n);
    for (const layer of cache.layers) ctx.write(layer.meta, c.numKvHeads * 4, lengths);
  } else if (policy) {
    await prefillCompressed(engine, cache, ids, policy, steps + 1);
  } else {
    const { acts } = await engine.prefill(cache, ids, 512, "last");
    releaseActivations(ctx, acts);
  }
  const sampler = createSamplerState(ctx, {
    token: ids[n - 1],
    position: n - 1,
    idsCapacity: steps,
  });
  const da = createActivations(ctx, engine.gpu, 1, 1);
  const list = forwardSteps(ctx, engine.gpu, cache.layers, da, {
    m: 1,
    mode: "decode",
    logits: "last",
    source: { ids: sampler.state, idsOffset: 0, positions: sampler.state, positionsOffset: 2 },
  });
  list.push(argmax(ctx, { logits: da.logits, vocabSize: c.vocabSize, sampler }));
  const prof: Profile = new Map();
  await timeSteps(ctx, list, new Map()); // warm
  for (let i = 0; i < steps - 1; i++) await timeSteps(ctx, list, prof);
  for (const e of prof.values()) e.ms /= steps - 1, e.count /= steps - 1;
  destroySteps(list);
  releaseActivations(ctx, da);
  ctx.release(sampler.state);
  ctx.release(sampler.ids);
  cache.release();
  return prof;
}

/** Prefills `ids` and applies `policy` to the cache, as a generation would before decoding. */
export async function prefillCompressed(
  engine: Engine,
  cache: RaggedKvCache,
  ids: number[],
  policy: string,
  decodeBudget: number,
): Promise<void> {
  const executor = planExecutor(engine, compileOrThrow(policy));
  await executor.prepare();
  const want = executor.observeRequest();
  if (want.firstStep) throw new Error("profile: first-step observations are not supported here");
  const n = ids.length;
  const obs = want.promptWindow > 0
    ? engine.createObservation(Math.min(n, want.promptWindow), n)
    : undefined;
  const sums = want.columnSums
    ? { stride: n, buffers: engine.createObservation(1, n).buffers }
    : undefined;
  const { acts } = await engine.prefill(cache, ids, 512, "last", obs, 0, sums);
  releaseActivations(engine.ctx, acts);
  await executor.apply({
    cache,
    promptLength: n,
    cachedLength: n,
    decodeBudget,
    promptObservation: obs,
    promptColumnSums: sums,
  });
  for (const b of [...obs?.buffers ?? [], ...sums?.buffers ?? []]) engine.ctx.release(b);
}

/** Formats a profile as a markdown table, largest first. */
export function profileTable(title: string, p: Profile): string {
  const total = [...p.values()].reduce((a, e) => a + e.ms, 0);
  const rows = [...p.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const lines = [
    `${title}: GPU time ${total.toFixed(1)} ms`,
    "",
    "| op | dispatches | ms | share |",
    "|---|---|---|---|",
  ];
  for (const [k, e] of rows) {
    lines.push(`| ${k} | ${e.count} | ${e.ms.toFixed(2)} | ${(100 * e.ms / total).toFixed(1)}% |`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseFlags("profile", Deno.args, {
    model: { type: "string" },
    shape: { type: "string" },
    prefill: { type: "string" },
    decode: { type: "string" },
    chunk: { type: "string" },
    synthetic: { type: "boolean" },
    policy: { type: "string" },
  });
  const a = values as Record<string, string | undefined>;
  const synthetic = values.synthetic === true;
  const list = (s: string | undefined, d: string) =>
    (s ?? d).split(",").filter((x) => x.trim() !== "").map(Number);
  const prefillLens = list(a.prefill, "1024,2048");
  const decodeLens = list(a.decode, "1024,4096");
  const maxLen = Math.max(...prefillLens, ...decodeLens) + 16;
  const engine = a.model
    ? await Engine.open(a.model)
    : await Engine.fromWeights(randomModel(a.shape ?? "small", maxLen), null);
  try {
    if (!engine.ctx.features.timestampQuery) throw new Error("no timestamp-query on this adapter");
    console.log(`Device: ${engine.ctx.adapterDescription}; model ${a.model ?? a.shape ?? "small"}`);
    for (const n of prefillLens) {
      const t = performance.now();
      const p = await profilePrefill(engine, n, Number(a.chunk ?? engine.prefillChunk));
      console.log(
        `\n${profileTable(`Prefill ${n} tokens`, p)}\n(wall ${
          (performance.now() - t).toFixed(0)
        } ms)`,
      );
    }
    for (const n of decodeLens) {
      const p = await profileDecode(engine, n, 4, synthetic, a.policy);
      const how = synthetic ? " (synthetic)" : a.policy ? ` after \`${a.policy}\`` : "";
      console.log(`\n${profileTable(`Decode step at ${n}${how}`, p)}`);
    }
  } finally {
    engine.close();
  }
}
