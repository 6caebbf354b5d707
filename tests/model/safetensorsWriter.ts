/**
 * Test helper: writes small safetensors files, optionally with a corrupted header, so that the
 * reader's validation can be exercised on crafted bad input.
 *
 * @module
 */

import { bytesPerElement, elementCount } from "../../src/model/dtype.ts";
import type { DType, Tensor } from "../../src/model/types.ts";

/** A header entry as written to the JSON header (tests may corrupt any field). */
export type HeaderEntry = { dtype: unknown; shape: unknown; data_offsets: unknown };

/** Options of {@link buildSafetensors}. */
export interface BuildOptions {
  /** Edits the JSON header before it is serialised. */
  editHeader?: (header: Record<string, HeaderEntry | Record<string, string>>) => void;
  /** Writes this value as the u64 header length instead of the real one. */
  headerLength?: bigint;
}

/** A tensor of the given shape whose elements are `scale * (i + 1)`, stored as F32. */
export function f32Tensor(name: string, shape: number[], scale = 1): Tensor {
  const values = Float32Array.from({ length: elementCount(shape) }, (_, i) => scale * (i + 1));
  return { name, dtype: "F32", shape, data: new Uint8Array(values.buffer) };
}

/** A zero-filled tensor of the given dtype and shape. */
export function zeroTensor(name: string, dtype: DType, shape: number[]): Tensor {
  return { name, dtype, shape, data: new Uint8Array(elementCount(shape) * bytesPerElement(dtype)) };
}

/** Serialises tensors into safetensors bytes (contiguous data, header padded to 8 bytes). */
export function buildSafetensors(tensors: Tensor[], opts: BuildOptions = {}): Uint8Array {
  const header: Record<string, HeaderEntry | Record<string, string>> = {
    __metadata__: { format: "pt" },
  };
  let offset = 0;
  for (const tensor of tensors) {
    header[tensor.name] = {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + tensor.data.byteLength],
    };
    offset += tensor.data.byteLength;
  }
  opts.editHeader?.(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += " ";
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(
    0,
    opts.headerLength ?? BigInt(headerBytes.byteLength),
    true,
  );
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const tensor of tensors) {
    out.set(tensor.data, position);
    position += tensor.data.byteLength;
  }
  return out;
}
