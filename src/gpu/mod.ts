/**
 * The GPU layer of kvpolicy: a WebGPU device with real limits ({@link acquireDevice}), weights in
 * their checkpoint dtype ({@link uploadMatrix}), the ragged KV cache ({@link createKvCacheLayer})
 * and the kernels of a Llama-family forward pass, each prepared once as a {@link GpuOp} and
 * encoded into one compute pass per step. See `README.md` beside this file for bindings, layouts
 * and measured numbers.
 *
 * @module
 */

export * from "./device.ts";
export * from "./op.ts";
export * from "./weights.ts";
export * from "./kvCache.ts";
export * from "./samplerState.ts";
export * from "./prng.ts";
export { tensorBytes } from "../model/blockInt8.ts";
export * from "./kernels/matmul.ts";
export * from "./kernels/embedding.ts";
export * from "./kernels/rmsNorm.ts";
export * from "./kernels/residualAdd.ts";
export * from "./kernels/swiglu.ts";
export * from "./kernels/rope.ts";
export * from "./kernels/kvAppend.ts";
export * from "./kernels/kvCompact.ts";
export * from "./kernels/prefillAttention.ts";
export * from "./kernels/decodeAttention.ts";
export * from "./kernels/argmax.ts";
export * from "./kernels/sample.ts";
