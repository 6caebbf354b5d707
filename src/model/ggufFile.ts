/**
 * A strict reader of GGUF files (llama.cpp's single-file checkpoints, format versions 2 and 3;
 * ggml's `docs/gguf.md`): the metadata key/value pairs and the tensor table, validated before
 * any tensor byte is read. Every count and length is checked against the bytes the file still
 * holds before anything is allocated, so a lying header can never allocate more than the file's
 * size; every problem is a {@link ModelError} naming the file and the field.
 *
 * (`@huggingface/gguf` parses the same layout but is built around HTTP range reads and reports
 * problems as generic errors; the format is small enough that a strict local reader is clearer.)
 *
 * @module
 */

import { ModelError } from "./errors.ts";
import { ggmlTensorBytes, isSupportedGgmlType } from "./ggufQuants.ts";
import { GGML_TYPES, type GgmlTypeName, type GgufMetadata, type GgufValue } from "./ggufTypes.ts";

/** The magic number at offset 0: the bytes "GGUF". */
const GGUF_MAGIC = 0x46554747;
/** Alignment of the tensor data when `general.alignment` is absent. */
const DEFAULT_ALIGNMENT = 32;
/** Bytes read from the file at a time while parsing the header. */
const CHUNK_BYTES = 1 << 20;
/** Longest key name accepted (the spec caps keys at 65535 bytes). */
const MAX_KEY_BYTES = 65535;
/** Most dimensions a tensor may have (ggml's GGML_MAX_DIMS). */
const MAX_DIMS = 4;
/** Largest element count accepted for one tensor (safe-integer arithmetic throughout). */
const MAX_ELEMENTS = 2 ** 40;

/** One entry of the tensor table, validated. */
export interface GgufTensorInfo {
  /** Tensor name as llama.cpp writes it, e.g. `blk.0.attn_q.weight`. */
  name: string;
  /** ggml dimensions, innermost first (`ne[0]` is a row's length). */
  dims: number[];
  /** Storage type. */
  type: GgmlTypeName;
  /** Absolute file offset of the tensor's first byte. */
  offset: number;
  /** Number of bytes it occupies. */
  bytes: number;
  /** Number of elements. */
  elements: number;
}

/** A GGUF file's header: version, metadata and tensor table. */
export interface GgufHeader {
  /** Path of the file. */
  file: string;
  /** Format version (2 or 3). */
  version: number;
  /** Metadata in file order. */
  metadata: GgufMetadata;
  /** Tensor table in file order. */
  tensors: GgufTensorInfo[];
  /** File size in bytes. */
  fileSize: number;
}

/** Opens `file`, reads and validates its header (metadata and tensor table, no tensor data). */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  const handle = await openRegularFile(file);
  try {
    return await parseGgufHeader(handle, file);
  } finally {
    handle.close();
  }
}

/** Opens a regular file for reading (not a FIFO or device), with clear errors. */
export async function openRegularFile(file: string): Promise<Deno.FsFile> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ModelError(`${file}: not found`);
    throw new ModelError(`${file}: cannot be read (${(error as Error).message})`);
  }
  if (!info.isFile) throw new ModelError(`${file}: not a regular file`);
  try {
    return await Deno.open(file, { read: true });
  } catch (error) {
    throw new ModelError(`${file}: cannot be read (${(error as Error).message})`);
  }
}

/** Parses the header from an open file (see {@link readGgufHeader}). */
export async function parseGgufHeader(handle: Deno.FsFile, file: string): Promise<GgufHeader> {
  const fileSize = (await handle.stat()).size;
  const input = new HeaderInput(handle, file, fileSize);
  if (fileSize < 24) {
    throw new ModelError(`${file}: too short to be a GGUF file (${fileSize} bytes)`);
  }
  const magic = await input.u32("magic");
  if (magic !== GGUF_MAGIC) {
    throw new ModelError(`${file}: not a GGUF file (the magic bytes are not "GGUF")`);
  }
  const version = await input.u32("version");
  if (version !== 2 && version !== 3) {
    throw new ModelError(`${file}: GGUF version ${version} is not supported (2 and 3 are)`);
  }
  const tensorCount = await input.count("tensor_count", 8 + 4 + 4 + 8 + 8);
  const kvCount = await input.count("metadata_kv_count", 8 + 4);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = await input.string(`metadata key #${i}`, MAX_KEY_BYTES);
    if (metadata.has(key)) throw new ModelError(`${file}: metadata key "${key}" appears twice`);
    const type = await input.u32(`metadata "${key}" type`);
    metadata.set(key, await input.value(type, key));
  }

  const alignment = alignmentOf(metadata, file);
  const raw: { name: string; dims: number[]; type: GgmlTypeName; relOffset: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = await input.string(`tensor #${i} name`, MAX_KEY_BYTES);
    if (names.has(name)) throw new ModelError(`${file}: tensor "${name}" appears twice`);
    names.add(name);
    const nDims = await input.u32(`tensor "${name}" n_dimensions`);
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw new ModelError(
        `${file}: tensor "${name}" has ${nDims} dimensions (1 to ${MAX_DIMS} are allowed)`,
      );
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      dims.push(await input.u64(`tensor "${name}" dimension ${d}`));
    }
    const typeId = await input.u32(`tensor "${name}" type`);
    const type = typeName(typeId);
    if (type === undefined || !isSupportedGgmlType(type)) {
      throw new ModelError(
        `${file}: tensor "${name}" has ggml type ${type ?? typeId}, which is not supported ` +
          `(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and others)`,
      );
    }
    raw.push({ name, dims, type, relOffset: await input.u64(`tensor "${name}" offset`) });
  }
  const dataStart = alignUp(input.position, alignment);

  const tensors = raw.map((t) => {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.dims.some((d) => d < 1) || elements > MAX_ELEMENTS) {
      throw new ModelError(
        `${file}: tensor "${t.name}" has dimensions [${t.dims.join(", ")}], which are not sane`,
      );
    }
    let bytes: number;
    try {
      bytes = ggmlTensorBytes(t.type, elements);
    } catch {
      throw new ModelError(
        `${file}: tensor "${t.name}" (${t.type}) has ${elements} elements, not a whole number of blocks`,
      );
    }
    if (t.relOffset % alignment !== 0) {
      throw new ModelError(
        `${file}: tensor "${t.name}" offset ${t.relOffset} is not a multiple of the alignment ${alignment}`,
      );
    }
    const offset = dataStart + t.relOffset;
    if (offset + bytes > fileSize) {
      throw new ModelError(
        `${file}: tensor "${t.name}" data (bytes ${offset}..${
          offset + bytes
        }) lies beyond the end ` +
          `of the file (${fileSize} bytes; truncated?)`,
      );
    }
    return { name: t.name, dims: t.dims, type: t.type, offset, bytes, elements };
  });
  checkNoOverlap(tensors, file);
  return { file, version, metadata, tensors, fileSize };
}

/** Reads one tensor's raw bytes (exactly `info.bytes`). */
export async function readTensorBytes(
  handle: Deno.FsFile,
  info: GgufTensorInfo,
  file: string,
): Promise<Uint8Array> {
  const out = new Uint8Array(info.bytes);
  await handle.seek(info.offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < out.length) {
    const n = await handle.read(out.subarray(done));
    if (n === null) throw new ModelError(`${file}: tensor "${info.name}" is truncated`);
    done += n;
  }
  return out;
}

function checkNoOverlap(tensors: GgufTensorInfo[], file: string): void {
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].offset < prev.offset + prev.bytes) {
      throw new ModelError(
        `${file}: tensors "${prev.name}" and "${sorted[i].name}" overlap in the data section`,
      );
    }
  }
}

function alignmentOf(metadata: GgufMetadata, file: string): number {
  const value = metadata.get("general.alignment");
  if (value === undefined) return DEFAULT_ALIGNMENT;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 1 << 20) {
    throw new ModelError(`${file}: "general.alignment" must be a small positive integer`);
  }
  if ((value & (value - 1)) !== 0) {
    throw new ModelError(`${file}: "general.alignment" ${value} is not a power of two`);
  }
  return value;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function typeName(id: number): GgmlTypeName | undefined {
  for (const [name, value] of Object.entries(GGML_TYPES)) {
    if (value === id) return name as GgmlTypeName;
  }
  return undefined;
}

/** Metadata value types (`enum gguf_metadata_value_type`). */
const VALUE = {
  U8: 0,
  I8: 1,
  U16: 2,
  I16: 3,
  U32: 4,
  I32: 5,
  F32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  U64: 10,
  I64: 11,
  F64: 12,
} as const;

/** Fixed size in bytes of each scalar value type (strings: at least their 8-byte length). */
const VALUE_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  8: 8,
  10: 8,
  11: 8,
  12: 8,
};

/**
 * Sequential little-endian reads over the header, refilled from the file a chunk at a time.
 * `remaining` bounds every count and length before anything is allocated.
 */
class HeaderInput {
  private buffer = new Uint8Array(0);
  private view = new DataView(this.buffer.buffer);
  /** File offset of `buffer[0]`. */
  private bufferStart = 0;
  /** File offset of the next byte to parse. */
  position = 0;
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(
    private readonly handle: Deno.FsFile,
    private readonly file: string,
    private readonly fileSize: number,
  ) {}

  get remaining(): number {
    return this.fileSize - this.position;
  }

  /** Makes `n` bytes from `position` available in the buffer (or throws: truncated). */
  private async ensure(n: number, field: string): Promise<number> {
    if (n > this.remaining) {
      throw new ModelError(`${this.file}: truncated while reading ${field}`);
    }
    const at = this.position - this.bufferStart;
    if (at + n <= this.buffer.length) return at;
    const keep = this.buffer.subarray(at);
    const size = Math.min(Math.max(n, CHUNK_BYTES), this.remaining);
    const next = new Uint8Array(size);
    next.set(keep);
    let filled = keep.length;
    await this.handle.seek(this.position + filled, Deno.SeekMode.Start);
    while (filled < size) {
      const got = await this.handle.read(next.subarray(filled));
      if (got === null) throw new ModelError(`${this.file}: truncated while reading ${field}`);
      filled += got;
    }
    this.buffer = next;
    this.view = new DataView(next.buffer);
    this.bufferStart = this.position;
    return 0;
  }

  async u32(field: string): Promise<number> {
    const at = await this.ensure(4, field);
    this.position += 4;
    return this.view.getUint32(at, true);
  }

  /** A u64 that must be a safe integer (sizes, offsets, dimensions). */
  async u64(field: string): Promise<number> {
    const at = await this.ensure(8, field);
    this.position += 8;
    const value = this.view.getBigUint64(at, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ModelError(`${this.file}: ${field} is absurdly large (${value})`);
    }
    return Number(value);
  }

  /** A u64 count of items each at least `minItemBytes` long, bounded by the bytes left. */
  async count(field: string, minItemBytes: number): Promise<number> {
    const n = await this.u64(field);
    if (n * minItemBytes > this.remaining) {
      throw new ModelError(
        `${this.file}: ${field} is ${n}, more than the file's remaining ${this.remaining} bytes can hold`,
      );
    }
    return n;
  }

  async string(field: string, maxBytes = Infinity): Promise<string> {
    const length = await this.u64(`${field} length`);
    if (length > maxBytes) {
      throw new ModelError(`${this.file}: ${field} has an absurd length (${length} bytes)`);
    }
    if (length > this.remaining) {
      throw new ModelError(
        `${this.file}: ${field} is ${length} bytes long, but only ${this.remaining} bytes are ` +
          `left in the file (truncated?)`,
      );
    }
    const at = await this.ensure(length, field);
    this.position += length;
    try {
      return this.decoder.decode(this.buffer.subarray(at, at + length));
    } catch {
      throw new ModelError(`${this.file}: ${field} is not valid UTF-8`);
    }
  }

  async value(type: number, key: string): Promise<GgufValue> {
    const field = `metadata "${key}"`;
    if (type === VALUE.STRING) return await this.string(field);
    if (type === VALUE.ARRAY) {
      const itemType = await this.u32(`${field} array type`);
      if (itemType === VALUE.ARRAY) {
        // Nested arrays are legal but unused by any model; refuse rather than recurse.
        throw new ModelError(`${this.file}: ${field} is an array of arrays, not supported`);
      }
      if (VALUE_BYTES[itemType] === undefined) {
        throw new ModelError(`${this.file}: ${field} has unknown array item type ${itemType}`);
      }
      const n = await this.count(`${field} array length`, VALUE_BYTES[itemType]);
      const items: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) items[i] = await this.value(itemType, key);
      return items;
    }
    const size = VALUE_BYTES[type];
    if (size === undefined) {
      throw new ModelError(`${this.file}: ${field} has unknown value type ${type}`);
    }
    const at = await this.ensure(size, field);
    this.position += size;
    const v = this.view;
    switch (type) {
      case VALUE.U8:
        return v.getUint8(at);
      case VALUE.I8:
        return v.getInt8(at);
      case VALUE.U16:
        return v.getUint16(at, true);
      case VALUE.I16:
        return v.getInt16(at, true);
      case VALUE.U32:
        return v.getUint32(at, true);
      case VALUE.I32:
        return v.getInt32(at, true);
      case VALUE.F32:
        return v.getFloat32(at, true);
      case VALUE.BOOL: {
        const b = v.getUint8(at);
        if (b > 1) throw new ModelError(`${this.file}: ${field} is a bool holding ${b}`);
        return b === 1;
      }
      case VALUE.U64:
        return v.getBigUint64(at, true);
      case VALUE.I64:
        return v.getBigInt64(at, true);
      default:
        return v.getFloat64(at, true);
    }
  }
}
