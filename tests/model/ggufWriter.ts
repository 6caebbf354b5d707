/**
 * Test helper: writes small GGUF files (ggml `docs/gguf.md`) byte by byte, every header field
 * overridable, so that tests can build valid files and then corrupt them. Also records where
 * each u32 and u64 field lies, for mutations that overwrite counts, sizes, types and offsets.
 *
 * @module
 */

/** Metadata value type ids (`enum gguf_metadata_value_type`). */
export const VALUE_TYPES = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** Name of a metadata value type. */
export type ValueTypeName = keyof typeof VALUE_TYPES;

/**
 * One metadata value. Integers, floats and bools are numbers (a bool may hold any byte),
 * 64-bit integers numbers or bigints; an array gives its item type and its items' values.
 */
export type MetaValue =
  | { t: Exclude<ValueTypeName, "array" | "string">; v: number | bigint | boolean }
  | { t: "string"; v: string | Uint8Array }
  | { t: "array"; of: ValueTypeName; v: MetaValue[] };

/** ggml type ids the writer knows by name (any other id may be given as a number). */
export const TENSOR_TYPES = { F32: 0, F16: 1, Q8_0: 8 } as const;

/** One tensor: ggml dims (innermost first), type, raw bytes, and optionally a forced offset. */
export interface TensorSpec {
  name: string | Uint8Array;
  dims: (number | bigint)[];
  type: keyof typeof TENSOR_TYPES | number;
  data: Uint8Array;
  /** Offset relative to the data section (default: packed, each aligned). */
  offset?: number | bigint;
}

/** A whole file; every header field can be overridden to corrupt it. */
export interface GgufSpec {
  metadata: [string | Uint8Array, MetaValue][];
  tensors: TensorSpec[];
  /** Alignment used to lay out the data (write `general.alignment` yourself to change it). */
  alignment?: number;
  magic?: number;
  version?: number;
  tensorCount?: number | bigint;
  kvCount?: number | bigint;
}

/** The bytes of a file and the byte offsets of every u32 and u64 field written. */
export interface GgufBytes {
  bytes: Uint8Array;
  u32At: number[];
  u64At: number[];
}

/** Serialises `spec` into GGUF bytes. */
export function buildGguf(spec: GgufSpec): GgufBytes {
  const alignment = spec.alignment ?? 32;
  const out = new Writer();
  out.u32(spec.magic ?? 0x46554747);
  out.u32(spec.version ?? 3);
  out.u64(spec.tensorCount ?? spec.tensors.length);
  out.u64(spec.kvCount ?? spec.metadata.length);
  for (const [key, value] of spec.metadata) {
    out.string(key);
    out.u32(VALUE_TYPES[value.t]);
    out.value(value);
  }
  let next = 0;
  const offsets = spec.tensors.map((t) => {
    const offset = t.offset ?? next;
    next = Math.ceil((Number(offset) + t.data.length) / alignment) * alignment;
    return offset;
  });
  spec.tensors.forEach((t, i) => {
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(typeof t.type === "number" ? t.type : TENSOR_TYPES[t.type]);
    out.u64(offsets[i]);
  });
  out.pad(alignment);
  const dataStart = out.length;
  spec.tensors.forEach((t, i) => out.put(t.data, dataStart + Number(offsets[i])));
  return { bytes: out.bytes(), u32At: out.u32At, u64At: out.u64At };
}

/** Payload bytes of the fixed-size value types. */
const SIZES = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, f64: 8 } as const;

/** An append-only little-endian byte buffer. */
class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;
  readonly u32At: number[] = [];
  readonly u64At: number[] = [];

  private grow(n: number): number {
    while (this.length + n > this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(v: number): void {
    const at = this.grow(4);
    this.u32At.push(at);
    this.view.setUint32(at, v, true);
  }

  u64(v: number | bigint): void {
    const at = this.grow(8);
    this.u64At.push(at);
    this.view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
  }

  string(s: string | Uint8Array): void {
    const bytes = typeof s === "string" ? new TextEncoder().encode(s) : s;
    this.u64(bytes.length);
    const at = this.grow(bytes.length);
    this.buf.set(bytes, at);
  }

  /** Writes a value's payload (its type id is written by the caller). */
  value(m: MetaValue): void {
    if (m.t === "string") return this.string(m.v);
    if (m.t === "array") {
      this.u32(VALUE_TYPES[m.of]);
      this.u64(m.v.length);
      for (const item of m.v) this.value(item);
      return;
    }
    const n = Number(m.v);
    if (m.t === "u64" || m.t === "i64") return this.u64(BigInt(m.v));
    if (m.t === "u32") return this.u32(n);
    const at = this.grow(SIZES[m.t]);
    if (m.t === "f64") this.view.setFloat64(at, n, true);
    else if (m.t === "f32") this.view.setFloat32(at, n, true);
    else for (let b = 0; b < SIZES[m.t]; b++) this.buf[at + b] = (n >> (8 * b)) & 0xff;
  }

  pad(alignment: number): void {
    this.grow((alignment - (this.length % alignment)) % alignment);
  }

  /** Copies `data` at absolute position `at`, growing the buffer as needed. */
  put(data: Uint8Array, at: number): void {
    if (at + data.length > this.length) this.grow(at + data.length - this.length);
    this.buf.set(data, at);
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}
