/**
 * What one decode step costs beyond the GPU's own work (issue: on a real GPU, decode is bound by
 * per-token dispatch cost): per step, the dispatches and compute passes it records, the CPU time
 * spent encoding it (pipelines, bind groups, passes: `encodeSteps` into a command encoder), the
 * GPU time of the step's work (timestamp queries around a batch of steps, where the adapter has
 * them), and the wall time per step when a batch is submitted as the decode loop does. The fixed
 * share `1 − GPU / wall` is what fusing kernels and batching submissions can still win.
 *
 * `deno task bench --profile` prints these for each shape, prompt length and policy.
 *
 * @module
 */

import type { GpuContext } from "../src/gpu/device.ts";
import { dispatchOp } from "../src/gpu/op.ts";
import { createSamplerState } from "../src/gpu/samplerState.ts";
import type { Engine } from "../src/runtime/engine.ts";
import { decodeStepOps } from "../src/runtime/decodeLoop.ts";
import {
  createActivations,
  destroySteps,
  encodeSteps,
  releaseActivations,
  type Step,
} from "../src/runtime/forwardPass.ts";
import { RaggedKvCache } from "../src/runtime/raggedKvCache.ts";
import { prefillCompressed } from "./profile.ts";

/** The cost of one decode step (averages over a batch). */
export interface StepCost {
  /** `dispatchWorkgroups` calls recorded per step. */
  dispatches: number;
  /** Compute passes per step (a buffer copy ends a pass). */
  passes: number;
  /** Buffer copies per step. */
  copies: number;
  /** CPU milliseconds to encode one step (no submission). */
  encode_ms: number;
  /** GPU milliseconds per step (timestamps), or null without `timestamp-query`. */
  gpu_ms: number | null;
  /** Wall milliseconds per step: encode, submit and wait for a batch, divided by its size. */
  wall_ms: number;
  /**
   * GPU milliseconds (wall without timestamps) of as many dispatches of an empty one-workgroup
   * kernel in one pass: the per-step floor that dispatching alone costs on this adapter.
   */
  floor_ms?: number | null;
}

const EMPTY_KERNEL = `@group(0) @binding(0) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x > 4000000000u) { sink[0] = id.x; }
}`;

/** {@link StepCost.floor_ms}: `dispatches` empty dispatches per step, over batches of `batch`. */
export async function dispatchFloor(
  ctx: GpuContext,
  dispatches: number,
  batch = 16,
): Promise<number> {
  const sink = ctx.createBuffer(16);
  const op = dispatchOp(ctx, {
    label: "bench:empty",
    pipeline: ctx.pipeline("bench-empty-dispatch", () => EMPTY_KERNEL),
    buffers: [sink],
    workgroups: [1],
  });
  try {
    const cost = await measureStepCost(ctx, Array(dispatches).fill(op), batch);
    return cost.gpu_ms ?? cost.wall_ms;
  } finally {
    op.destroy();
    ctx.release(sink);
  }
}

/** Counts what `steps` record, with a stand-in compute pass that only counts. */
export function countStep(steps: Step[]): Pick<StepCost, "dispatches" | "passes" | "copies"> {
  let dispatches = 0, passes = 0, copies = 0, open = false;
  const pass = {
    setPipeline() {},
    setBindGroup() {},
    dispatchWorkgroups() {
      dispatches++;
    },
    dispatchWorkgroupsIndirect() {
      dispatches++;
    },
  } as unknown as GPUComputePassEncoder;
  for (const s of steps) {
    if ("copy" in s) {
      copies++;
      open = false;
    } else {
      if (!open) passes++;
      open = true;
      s.encode(pass);
    }
  }
  return { dispatches, passes, copies };
}

/** Measures {@link StepCost} of `steps` over batches of `batch` steps (after one warm batch). */
export async function measureStepCost(
  ctx: GpuContext,
  steps: Step[],
  batch = 16,
): Promise<StepCost> {
  const counts = countStep(steps);
  const run = async (timestamps?: GPUQuerySet) => {
    const t0 = performance.now();
    const encoder = ctx.device.createCommandEncoder();
    const mark = (index: number) => {
      if (!timestamps) return;
      const w = index === 0 ? { beginningOfPassWriteIndex: 0 } : { endOfPassWriteIndex: 1 };
      encoder.beginComputePass({ timestampWrites: { querySet: timestamps, ...w } }).end();
    };
    mark(0);
    for (let i = 0; i < batch; i++) encodeSteps(encoder, steps);
    mark(1);
    const encoded = performance.now();
    ctx.device.queue.submit([encoder.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
    return { encodeMs: encoded - t0, wallMs: performance.now() - t0 };
  };
  await run(); // warm: pipelines compiled, caches touched
  if (!ctx.features.timestampQuery) {
    const plain = await run();
    return {
      ...counts,
      encode_ms: plain.encodeMs / batch,
      gpu_ms: null,
      wall_ms: plain.wallMs / batch,
    };
  }
  // GPU and wall time from the same batch (two empty passes hold the timestamps).
  const qs = ctx.device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = ctx.device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = ctx.createBuffer(16);
  try {
    const timed = await run(qs);
    const enc = ctx.device.createCommandEncoder();
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
    ctx.device.queue.submit([enc.finish()]);
    const ts = new BigUint64Array(await ctx.read(read));
    return {
      ...counts,
      encode_ms: timed.encodeMs / batch,
      gpu_ms: Number(ts[1] - ts[0]) / 1e6 / batch,
      wall_ms: timed.wallMs / batch,
    };
  } finally {
    ctx.release(read);
    resolve.destroy();
    qs.destroy();
  }
}

/**
 * {@link StepCost} of a decode step after a prompt of `n` tokens, prefilled and compressed by
 * `policy` (the full cache for `else -> full`), with the steps a generation records (the cache's
 * per-step work included: window rings, H2O, quantisation).
 */
export async function decodeStepCost(
  engine: Engine,
  n: number,
  policy: string,
  batch = 16,
): Promise<StepCost> {
  const ctx = engine.ctx, c = engine.config;
  const cache = new RaggedKvCache(ctx, c, n + 2 * batch + 2);
  const ids = Array.from({ length: n }, (_, j) => (j * 7919 + 13) % c.vocabSize);
  await prefillCompressed(engine, cache, ids, policy, 2 * batch + 2);
  const sampler = createSamplerState(ctx, {
    token: ids[n - 1],
    position: n - 1,
    idsCapacity: 4 * batch,
  });
  const acts = createActivations(ctx, engine.gpu, 1, 1);
  const greedy = { temperature: 0, topK: 0, topP: 1, seed: 0 };
  const steps = decodeStepOps(ctx, engine.gpu, cache, acts, sampler, greedy);
  try {
    const cost = await measureStepCost(ctx, steps, batch);
    return { ...cost, floor_ms: await dispatchFloor(ctx, cost.dispatches, batch) };
  } finally {
    destroySteps(steps);
    releaseActivations(ctx, acts);
    ctx.release(sampler.state);
    ctx.release(sampler.ids);
    cache.release();
  }
}

/** One row of `bench --profile`. */
export interface StepCostRow extends StepCost {
  shape: string;
  prompt_tokens: number;
  policy: string;
}

/**
 * A markdown table of step costs: "not GPU work" is `1 − GPU / wall` (encoding, submission,
 * waiting), the floor what as many empty dispatches cost on the GPU.
 */
export function stepCostTable(rows: StepCostRow[]): string {
  const lines = [
    "| model | prompt | policy | dispatches | passes | encode ms (CPU) | GPU ms | wall ms | not GPU work | empty-dispatch floor ms |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const fixed = r.gpu_ms === null ? "n/a" : `${(100 * (1 - r.gpu_ms / r.wall_ms)).toFixed(0)}%`;
    lines.push(
      `| ${r.shape} | ${r.prompt_tokens} | \`${
        r.policy.replace(/^else -> /, "")
      }\` | ${r.dispatches} | ${r.passes} | ${r.encode_ms.toFixed(2)} | ${
        r.gpu_ms === null ? "n/a" : r.gpu_ms.toFixed(2)
      } | ${r.wall_ms.toFixed(2)} | ${fixed} | ${
        r.floor_ms == null ? "n/a" : r.floor_ms.toFixed(2)
      } |`,
    );
  }
  return lines.join("\n");
}

/**
 * `bench --profile`: {@link decodeStepCost} for every shape × prompt length × policy, on engines
 * made by `open(shape)`; `onRow` sees each row as it is measured.
 */
export async function runStepCostProfile(
  open: (shape: string) => Promise<Engine>,
  o: { shapes: string[]; lengths: number[]; policies: string[]; batch?: number },
  onRow?: (row: StepCostRow) => void,
): Promise<{ device: string; rows: StepCostRow[] }> {
  const rows: StepCostRow[] = [];
  let device = "";
  for (const shape of o.shapes) {
    const engine = await open(shape);
    try {
      device = engine.ctx.adapterDescription;
      for (const n of o.lengths) {
        for (const policy of o.policies) {
          const cost = await decodeStepCost(engine, n, policy, o.batch);
          const row = { shape, prompt_tokens: n, policy, ...cost };
          rows.push(row);
          onRow?.(row);
        }
      }
    } finally {
      engine.close();
    }
  }
  return { device, rows };
}
