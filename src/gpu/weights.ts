/**
 * Weights on the GPU in their checkpoint dtype. A matrix `[rows, cols]` is stored row-major with
 * a row stride rounded up to 4 elements (rows are repacked with zero padding only when `cols` is
 * not a multiple of 4), and split over rows into segments that each fit one storage binding,
 * placed at offsets aligned to `minStorageBufferOffsetAlignment` (a new buffer is started when
 * one would exceed `maxBufferSize`).
 *
 * @module
 */

import type { DType } from "../model/types.ts";
import { alignUp, type GpuContext, STORAGE_USAGE } from "./device.ts";
import { tensorBytes } from "../model/blockInt8.ts";

/** A tensor as the GPU layer needs it (compatible with the model layer's `Tensor`). */
export interface HostTensor {
  /** Storage dtype. */
  dtype: DType;
  /** Shape, row-major. */
  shape: number[];
  /** Raw little-endian bytes. */
  data: Uint8Array;
  /** Name for error messages. */
  name?: string;
}

/** Rows `rowStart .. rowStart+rows-1` of a matrix, bound as one storage range. */
export interface GpuSegment {
  /** Buffer holding the rows. */
  buffer: GPUBuffer;
  /** Byte offset (aligned to `minStorageBufferOffsetAlignment`). */
  offset: number;
  /** Byte size of the range. */
  size: number;
  /** First row. */
  rowStart: number;
  /** Number of rows. */
  rows: number;
}

/** A 2-D weight on the GPU. */
export interface GpuMatrix {
  /** Name (for messages). */
  name: string;
  /** Storage dtype. */
  dtype: DType;
  /** Rows (output features for Linear weights, vocabulary for embeddings). */
  rows: number;
  /** Columns (input features, hidden size). */
  cols: number;
  /** Elements between consecutive rows: `cols` rounded up to a multiple of 4. */
  rowStride: number;
  /** Row ranges, each bindable on its own. */
  segments: GpuSegment[];
  /** Buffers owned by this matrix. */
  buffers: GPUBuffer[];
}

/** A 1-D weight (norm weight, bias) in its checkpoint dtype, zero-padded to 16 bytes. */
export interface GpuVector {
  /** Name. */
  name: string;
  /** Storage dtype. */
  dtype: DType;
  /** Number of elements. */
  length: number;
  /** The buffer. */
  buffer: GPUBuffer;
}

/** Options of {@link uploadMatrix}. */
export interface UploadMatrixOptions {
  /** Maximum bytes per segment (defaults to the context's binding cap). */
  maxBindingBytes?: number;
}

/** Uploads a 2-D tensor as a {@link GpuMatrix} (see the module doc for the layout). */
export function uploadMatrix(
  ctx: GpuContext,
  t: HostTensor,
  opts: UploadMatrixOptions = {},
): GpuMatrix {
  const name = t.name ?? "matrix";
  if (t.shape.length !== 2) throw new Error(`${name}: expected a 2-D tensor, got [${t.shape}]`);
  const [rows, cols] = t.shape;
  if (t.data.byteLength !== tensorBytes(t.dtype, rows * cols)) {
    throw new Error(`${name}: ${t.data.byteLength} bytes for [${rows}, ${cols}] ${t.dtype}`);
  }
  const rowStride = alignUp(cols, 4);
  const eb = tensorBytes(t.dtype, cols) / cols; // bytes per element of a row as given
  const rowBytes = tensorBytes(t.dtype, rowStride);
  const maxBinding = Math.min(opts.maxBindingBytes ?? ctx.maxBindingBytes, ctx.maxBindingBytes);
  const align = ctx.limits.minStorageBufferOffsetAlignment;
  if (rowBytes > maxBinding) {
    throw new Error(`${name}: one row (${rowBytes} B) exceeds the binding limit ${maxBinding} B`);
  }
  let maxRows = Math.floor(maxBinding / rowBytes);
  // keep segment byte sizes multiples of the offset alignment so the next segment packs tightly
  const step = align / gcd(rowBytes, align);
  if (maxRows > step) maxRows -= maxRows % step;
  const plan: Array<{ rowStart: number; rows: number; offset: number; buf: number }> = [];
  const bufSizes: number[] = [0];
  for (let r = 0; r < rows; r += maxRows) {
    const n = Math.min(maxRows, rows - r);
    let offset = alignUp(bufSizes[bufSizes.length - 1], align);
    if (offset + n * rowBytes > ctx.limits.maxBufferSize) {
      bufSizes.push(0);
      offset = 0;
    }
    plan.push({ rowStart: r, rows: n, offset, buf: bufSizes.length - 1 });
    bufSizes[bufSizes.length - 1] = offset + n * rowBytes;
  }
  const buffers = bufSizes.map((s, i) => ctx.createBuffer(s, STORAGE_USAGE, `${name}#${i}`));
  const segments: GpuSegment[] = plan.map((p) => {
    const seg = {
      buffer: buffers[p.buf],
      offset: p.offset,
      size: p.rows * rowBytes,
      rowStart: p.rowStart,
      rows: p.rows,
    };
    if (rowStride === cols) {
      ctx.write(
        seg.buffer,
        seg.offset,
        t.data.subarray(p.rowStart * rowBytes, (p.rowStart + p.rows) * rowBytes),
      );
    } else {
      const packed = new Uint8Array(seg.size);
      for (let r = 0; r < p.rows; r++) {
        const src = (p.rowStart + r) * cols * eb;
        packed.set(t.data.subarray(src, src + cols * eb), r * rowBytes);
      }
      ctx.write(seg.buffer, seg.offset, packed);
    }
    return seg;
  });
  return { name, dtype: t.dtype, rows, cols, rowStride, segments, buffers };
}

/** Uploads a 1-D tensor (any shape is flattened) as a {@link GpuVector}. */
export function uploadVector(ctx: GpuContext, t: HostTensor): GpuVector {
  const name = t.name ?? "vector";
  const length = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.byteLength !== tensorBytes(t.dtype, length)) {
    throw new Error(`${name}: ${t.data.byteLength} bytes for ${length} ${t.dtype}`);
  }
  const padded = new Uint8Array(alignUp(t.data.byteLength, 16));
  padded.set(t.data);
  return { name, dtype: t.dtype, length, buffer: ctx.upload(padded, STORAGE_USAGE, name) };
}

/** Destroys a matrix's buffers. */
export function releaseMatrix(ctx: GpuContext, m: GpuMatrix): void {
  for (const b of m.buffers) ctx.release(b);
  m.buffers.length = 0;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
