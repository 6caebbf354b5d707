/**
 * Recorded GPU operations: a kernel wrapper returns a {@link GpuOp} whose pipeline, bind groups
 * and parameter buffers are created once, so a forward pass can encode many ops into one compute
 * pass per step without allocating.
 *
 * @module
 */

import { bindingOf, type BufferRef, type GpuContext } from "./device.ts";

/** A prepared dispatch (or several) that can be recorded into a compute pass any number of times. */
export interface GpuOp {
  /** What it computes (for errors and profiling). */
  readonly label: string;
  /** Records the dispatch(es) into `pass`. */
  encode(pass: GPUComputePassEncoder): void;
  /** Frees the op's own parameter buffers (not the tensors it reads or writes). */
  destroy(): void;
}

/** Workgroup counts of a dispatch. */
export type Workgroups = [number, number?, number?];

/** Description of one dispatch for {@link dispatchOp}. */
export interface DispatchSpec {
  /** Label. */
  label: string;
  /** Compiled pipeline. */
  pipeline: GPUComputePipeline;
  /** Parameters for `@binding(0) var<uniform>`, 4-byte words; omitted when the kernel has none. */
  params?: ArrayBuffer;
  /** Storage bindings, in order, starting at binding 1 (binding 0 when `params` is absent). */
  buffers: BufferRef[];
  /** Workgroup counts. */
  workgroups: Workgroups;
}

/** Builds a {@link GpuOp} running one dispatch. */
export function dispatchOp(ctx: GpuContext, spec: DispatchSpec): GpuOp {
  const entries: GPUBindGroupEntry[] = [];
  let uniform: GPUBuffer | null = null;
  if (spec.params) {
    uniform = ctx.createBuffer(
      spec.params.byteLength,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      `${spec.label}:params`,
    );
    ctx.write(uniform, 0, new Uint8Array(spec.params));
    entries.push({ binding: 0, resource: { buffer: uniform } });
  }
  const first = entries.length;
  spec.buffers.forEach((b, i) => entries.push({ binding: first + i, resource: bindingOf(b) }));
  const bindGroup = ctx.device.createBindGroup({
    layout: spec.pipeline.getBindGroupLayout(0),
    entries,
    label: spec.label,
  });
  ctx.notePipelineUse(spec.pipeline, bindGroup);
  let dispatched = false;
  const [x, y = 1, z = 1] = spec.workgroups;
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (x > max || y > max || z > max) {
    throw new RangeError(`${spec.label}: dispatch ${x}×${y}×${z} exceeds ${max} per dimension`);
  }
  return {
    label: spec.label,
    encode(pass) {
      if (x === 0 || y === 0 || z === 0) return;
      if (!dispatched) {
        dispatched = true;
        ctx.notePipelineDispatched(spec.pipeline);
      }
      pass.setPipeline(spec.pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
    },
    destroy() {
      if (uniform) ctx.release(uniform);
      uniform = null;
    },
  };
}

/** Combines ops into one that encodes them in order. */
export function sequenceOp(label: string, ops: GpuOp[]): GpuOp {
  return {
    label,
    encode(pass) {
      for (const op of ops) op.encode(pass);
    },
    destroy() {
      for (const op of ops) op.destroy();
    },
  };
}

/** Packs u32 / f32 parameters into 4-byte words (a uniform struct of u32/f32 fields). */
export function packParams(fields: Array<["u32" | "f32", number]>): ArrayBuffer {
  const words = alignWords(fields.length);
  const buf = new ArrayBuffer(words * 4);
  const dv = new DataView(buf);
  fields.forEach(([t, v], i) => {
    if (t === "u32") {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new RangeError(`parameter ${i} must be a u32, got ${v}`);
      }
      dv.setUint32(i * 4, v, true);
    } else dv.setFloat32(i * 4, v, true);
  });
  return buf;
}

function alignWords(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

/**
 * Splits `n` workgroups into an x×y grid within the per-dimension limit; kernels recover the
 * linear workgroup index as `wid.x + wid.y * nwg.x`.
 */
export function grid2d(n: number, max = 65535): Workgroups {
  if (n <= max) return [n, 1];
  const y = Math.ceil(n / max);
  return [Math.ceil(n / y), y];
}

/** Encodes `ops` into one compute pass of one command encoder and submits it. */
export function runOps(ctx: GpuContext, ops: GpuOp[]): void {
  ctx.check();
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const op of ops) op.encode(pass);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
}
