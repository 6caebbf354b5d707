/**
 * GPU test helpers: one device per test (destroyed at the end so the sanitizers stay clean), and a
 * visible SKIP when this machine has no WebGPU adapter at all.
 *
 * @module
 */

import { acquireDevice, type AcquireOptions, type GpuContext } from "../../src/gpu/device.ts";
import { type GpuOp, runOps } from "../../src/gpu/op.ts";

/** Whether `navigator.gpu` yields an adapter here. */
export const GPU_AVAILABLE: boolean = await (async () => {
  try {
    return !!navigator.gpu && (await navigator.gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
})();

let warned = false;

/** Registers a test that gets a fresh device, destroyed afterwards; ignored (SKIP) without GPU. */
export function gpuTest(
  name: string,
  fn: (ctx: GpuContext) => void | Promise<void>,
  opts: AcquireOptions = {},
): void {
  if (!GPU_AVAILABLE && !warned) {
    warned = true;
    console.warn(
      "SKIP: no WebGPU adapter (navigator.gpu absent or requestAdapter() returned null); " +
        "GPU tests are ignored. Install mesa-vulkan-drivers to run them on the CPU.",
    );
  }
  Deno.test({
    name,
    ignore: !GPU_AVAILABLE,
    async fn() {
      const ctx = await acquireDevice(opts);
      try {
        await fn(ctx);
        ctx.check();
      } finally {
        ctx.destroy();
      }
    },
  });
}

/** Encodes and submits `ops`, then destroys them. */
export function runAndFree(ctx: GpuContext, ops: GpuOp[]): void {
  runOps(ctx, ops);
  for (const op of ops) op.destroy();
}

/**
 * Distance in units in the last place between two f32 values (0 for equal bits; +0 and -0 are
 * 0 apart; NaN against anything else is Infinity).
 */
export function ulpDistance(a: number, b: number): number {
  if (Object.is(a, b) || a === b) return 0;
  if (Number.isNaN(a) || Number.isNaN(b)) return Infinity;
  const ordered = (x: number) => {
    const u = new Uint32Array(Float32Array.of(x).buffer)[0];
    return u & 0x80000000 ? -(u & 0x7fffffff) : u;
  };
  return Math.abs(ordered(a) - ordered(b));
}

/**
 * Floating-point results of two kernels that compute the same expression: bit-identical on CPU
 * adapters (llvmpipe evaluates both the same way); on a GPU, whose compiler may contract a·b + c
 * into an FMA in one kernel and not the other (and whose division is only correct to 2.5 ulp),
 * within `gpuUlp` units in the last place or `gpuAbs` absolute (results of a cancellation such
 * as x·cos − y·sin are exact only relative to their inputs: 8 ulp of 0.013 were seen on an H100).
 */
export function assertSameFloats(
  ctx: GpuContext,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  gpuUlp = 4,
  gpuAbs = 1e-7,
): void {
  if (got.length !== want.length) {
    throw new Error(`${what}: ${got.length} values, want ${want.length}`);
  }
  const exact = ctx.isFallbackAdapter;
  for (let i = 0; i < want.length; i++) {
    const d = ulpDistance(got[i], want[i]);
    if (d === 0 || (!exact && (d <= gpuUlp || Math.abs(got[i] - want[i]) <= gpuAbs))) continue;
    throw new Error(
      `${what}: value ${i} is ${got[i]}, want ${want[i]} (${d} ulp apart; ` +
        (exact ? "bit-identical required on CPU adapters)" : `${gpuUlp} ulp or ${gpuAbs} allowed)`),
    );
  }
}
