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
