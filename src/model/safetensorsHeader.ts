/**
 * Strict validation of a safetensors JSON header, before any offset in it is trusted.
 *
 * File layout: a u64 little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}}`, offsets
 * relative to the first byte after the header), then the raw little-endian tensor data.
 *
 * @module
 */

import { bytesPerElement } from "./dtype.ts";
import { ModelError } from "./errors.ts";
import type { DType } from "./types.ts";

/** Largest JSON header accepted (the reference Rust implementation uses the same 100 MB cap). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Bytes of the u64 header-length prefix. */
export const HEADER_LENGTH_BYTES = 8;

const DTYPES: readonly DType[] = ["F32", "F16", "BF16"];

/** One validated header entry; offsets are relative to the start of the data section. */
export interface SafetensorsEntry {
  /** Tensor name. */
  name: string;
  /** Storage dtype. */
  dtype: DType;
  /** Shape (non-negative integers). */
  shape: number[];
  /** First byte of the tensor in the data section. */
  begin: number;
  /** One past the last byte of the tensor in the data section. */
  end: number;
}

/**
 * Checks the 8-byte length prefix against the file size and the header cap; returns the header
 * length N. `file` names the file in error messages.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < HEADER_LENGTH_BYTES || prefix.byteLength < HEADER_LENGTH_BYTES) {
    throw new ModelError(
      `${file}: truncated safetensors file (${fileSize} bytes; the 8-byte header length is missing)`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, HEADER_LENGTH_BYTES);
  const length = view.getBigUint64(0, true);
  if (length > BigInt(fileSize - HEADER_LENGTH_BYTES)) {
    throw new ModelError(
      `${file}: safetensors header length ${length} exceeds the file size (${fileSize} bytes); ` +
        `the file is truncated or not a safetensors file`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new ModelError(
      `${file}: safetensors header length ${length} is larger than the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  if (length < 2n) throw new ModelError(`${file}: safetensors header is empty`);
  return Number(length);
}

/**
 * Parses and validates the JSON header bytes. `dataSize` is the size of the data section (file
 * size − 8 − N). Every entry must have a supported dtype, a shape of non-negative integers, and
 * offsets inside the data section whose span equals the shape's byte size; entries must not
 * overlap. Returns the entries in header order.
 */
export function parseHeader(
  headerBytes: Uint8Array,
  dataSize: number,
  file: string,
): SafetensorsEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (error) {
    throw new ModelError(
      `${file}: safetensors header is not valid UTF-8 JSON (${(error as Error).message})`,
    );
  }
  if (!isObject(json)) throw new ModelError(`${file}: safetensors header is not a JSON object`);
  const entries: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isObject(value)) throw new ModelError(`${file}: "__metadata__" must be an object`);
      continue;
    }
    entries.push(parseEntry(name, value, dataSize, file));
  }
  checkNoOverlap(entries, file);
  return entries;
}

function parseEntry(
  name: string,
  value: unknown,
  dataSize: number,
  file: string,
): SafetensorsEntry {
  const where = `${file}: tensor "${name}"`;
  if (!isObject(value)) throw new ModelError(`${where}: header entry must be an object`);
  const dtype = value.dtype;
  if (typeof dtype !== "string") throw new ModelError(`${where}: "dtype" must be a string`);
  if (!DTYPES.includes(dtype as DType)) {
    throw new ModelError(
      `${where} has dtype ${JSON.stringify(dtype)}; only F32, F16 and BF16 are supported`,
    );
  }
  const shape = value.shape;
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    throw new ModelError(`${where}: "shape" must be a list of non-negative integers`);
  }
  let elements = 1;
  for (const dim of shape as number[]) elements *= dim;
  const bytes = elements * bytesPerElement(dtype as DType);
  if (!Number.isSafeInteger(bytes)) throw new ModelError(`${where}: "shape" is too large`);
  const offsets = value.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
    throw new ModelError(`${where}: "data_offsets" must be two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataSize) {
    throw new ModelError(
      `${where}: data_offsets [${begin}, ${end}] lie outside the data section (${dataSize} bytes)`,
    );
  }
  if (end - begin !== bytes) {
    throw new ModelError(
      `${where}: data_offsets span ${end - begin} bytes but shape [${shape.join(", ")}] ` +
        `of ${dtype} needs ${bytes}`,
    );
  }
  return { name, dtype: dtype as DType, shape: shape as number[], begin, end };
}

function checkNoOverlap(entries: SafetensorsEntry[], file: string): void {
  const nonEmpty = entries.filter((entry) => entry.end > entry.begin);
  nonEmpty.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < nonEmpty.length; i++) {
    const previous = nonEmpty[i - 1];
    const current = nonEmpty[i];
    if (current.begin < previous.end) {
      throw new ModelError(
        `${file}: tensors "${previous.name}" [${previous.begin}, ${previous.end}] and ` +
          `"${current.name}" [${current.begin}, ${current.end}] overlap`,
      );
    }
  }
}

function isNonNegativeInt(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
