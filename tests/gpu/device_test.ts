import assert from "node:assert/strict";
import {
  acquireDevice,
  checkKernelFeatures,
  GpuDeviceLostError,
  GpuUnavailableError,
  GpuValidationError,
  NO_ADAPTER_MESSAGE,
} from "../../src/gpu/device.ts";
import { defaultKernels } from "../../src/gpu/kernelChoice.ts";
import { dispatchOp, runOps } from "../../src/gpu/op.ts";
import { GPU_AVAILABLE, gpuTest } from "./_gpu.ts";

gpuTest("acquireDevice: adapter limits and features are granted", async (ctx) => {
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter);
  assert.equal(ctx.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
  assert.equal(ctx.limits.maxBufferSize, adapter.limits.maxBufferSize);
  assert.equal(
    ctx.limits.maxComputeWorkgroupStorageSize,
    adapter.limits.maxComputeWorkgroupStorageSize,
  );
  assert.equal(ctx.maxBindingBytes, ctx.limits.maxStorageBufferBindingSize);
  assert.equal(ctx.features.shaderF16, adapter.features.has("shader-f16"));
  assert.equal(ctx.device.features.has("shader-f16"), ctx.features.shaderF16);
  assert.ok(ctx.adapterDescription.length > 0);
});

gpuTest("GpuContext: upload, read back, pipeline cache, validation errors", async (ctx) => {
  const b = ctx.upload(new Uint8Array([1, 2, 3, 4, 5]));
  assert.equal(b.size, 16);
  assert.deepEqual(Array.from(new Uint8Array(await ctx.read(b, 0, 5))), [1, 2, 3, 4, 5]);
  const code = () => "@compute @workgroup_size(1) fn main() {}";
  const p1 = ctx.pipeline("noop", code);
  assert.equal(ctx.pipeline("noop", code), p1);
  ctx.pipeline("broken", () => "fn main( {");
  await assert.rejects(() => ctx.sync(), GpuValidationError);
  ctx.check(); // the error is reported once
});

gpuTest("acquireDevice: a binding cap for tests", (ctx) => {
  assert.equal(ctx.maxBindingBytes, 4096);
}, { maxBindingBytes: 4096 });

Deno.test({
  name: "GpuContext: operations after device loss throw instead of hanging",
  ignore: !GPU_AVAILABLE,
  async fn() {
    const ctx = await acquireDevice();
    const b = ctx.createBuffer(64);
    ctx.destroy();
    await new Promise((r) => setTimeout(r, 0));
    assert.ok(ctx.lost);
    assert.throws(() => ctx.createBuffer(16), GpuDeviceLostError);
    await assert.rejects(() => ctx.read(b), GpuDeviceLostError);
  },
});

Deno.test("NO_ADAPTER_MESSAGE names the fix", () => {
  assert.match(NO_ADAPTER_MESSAGE, /no WebGPU adapter found; on Linux install mesa-vulkan-drivers/);
});

Deno.test("checkKernelFeatures: shader-f16 choices on an adapter without it fail clearly", () => {
  const none = { shaderF16: false, timestampQuery: false };
  const kernels = defaultKernels(false);
  checkKernelFeatures(kernels, none);
  checkKernelFeatures({ ...kernels, f16: "native", math: "f16" }, { ...none, shaderF16: true });
  assert.throws(
    () => checkKernelFeatures({ ...kernels, math: "f16" }, none),
    (e) =>
      e instanceof GpuUnavailableError &&
      e.message === "math=f16 (KVPOLICY_KERNELS) needs the shader-f16 feature, which this " +
          "adapter lacks",
  );
  assert.throws(
    () => checkKernelFeatures({ ...kernels, f16: "native", math: "f16" }, none),
    /^GpuError: f16=native, math=f16 \(KVPOLICY_KERNELS\) needs the shader-f16 feature/,
  );
});

gpuTest(
  "GpuContext.compilePending: compiles noted kernels ahead, reports each, runs them right",
  async (ctx) => {
    const wgsl = (k: number) =>
      `@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@compute @workgroup_size(1) fn main() { x[0] = x[0] * ${k}u + 1u; }`;
    const x = ctx.upload(new Uint32Array([2]));
    const ops = [3, 5].map((k) =>
      dispatchOp(ctx, {
        label: `times ${k}`,
        pipeline: ctx.pipeline(`compilePending-test:${k}`, () => wgsl(k)),
        buffers: [x],
        workgroups: [1],
      })
    );
    // a noted op whose buffer is freed before the compile: dropped quietly, not an error later
    const gone = ctx.createBuffer(16);
    const orphan = dispatchOp(ctx, {
      label: "orphan",
      pipeline: ctx.pipeline("compilePending-test:7", () => wgsl(7)),
      buffers: [gone],
      workgroups: [1],
    });
    ctx.release(gone);
    const calls: Array<[number, number]> = [];
    ctx.onCompileProgress = (done, total, ms) => {
      assert.ok(ms >= 0);
      calls.push([done, total]);
    };
    await ctx.compilePending();
    assert.deepEqual(calls, [[1, 3], [2, 3], [3, 3]]);
    ctx.check();
    // the zero-workgroup dispatches ran nothing: x is still 2
    assert.deepEqual(Array.from(await ctx.readU32(x, 0, 1)), [2]);
    runOps(ctx, ops);
    assert.deepEqual(Array.from(await ctx.readU32(x, 0, 1)), [(2 * 3 + 1) * 5 + 1]);
    // nothing left to compile; a dispatched kernel is never queued again
    calls.length = 0;
    dispatchOp(ctx, {
      label: "again",
      pipeline: ctx.pipeline("compilePending-test:3", () => wgsl(3)),
      buffers: [x],
      workgroups: [1],
    }).destroy();
    await ctx.compilePending();
    assert.deepEqual(calls, []);
    for (const op of [...ops, orphan]) op.destroy();
  },
);

gpuTest(
  "GpuContext.memory: live and peak buffer bytes, watches, every way of freeing",
  async (ctx) => {
    const base = ctx.memory.live;
    const watch = ctx.watchMemory();
    const a = ctx.createBuffer(1000); // rounded up to 1000 (a multiple of 4)
    const b = ctx.upload(new Uint8Array(5)); // at least 16 bytes
    assert.equal(ctx.memory.live, base + 1000 + 16);
    a.destroy(); // a buffer's own destroy() counts
    a.destroy(); // twice is harmless
    assert.equal(ctx.memory.live, base + 16);
    const late = ctx.watchMemory(); // starts from what is live now
    ctx.release(b);
    assert.equal(ctx.memory.live, base);
    const c = ctx.createBuffer(400);
    await ctx.read(c); // the readback's staging buffer is device memory too, while it lives
    ctx.release(c);
    assert.equal(ctx.memory.live, base);
    assert.ok(ctx.memory.peak >= base + 1016);
    assert.equal(watch.peak, base + 1016);
    assert.equal(late.peak, base + 800);
    watch.stop();
    const d = ctx.createBuffer(4000);
    assert.equal(watch.peak, base + 1016, "a stopped watch no longer moves");
    assert.equal(late.peak, base + 4000);
    late.stop();
    ctx.release(d);
  },
);
