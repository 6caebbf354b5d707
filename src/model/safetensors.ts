/**
 * Reading tensors from safetensors checkpoints with Deno file APIs: a single
 * `model.safetensors`, or shards listed in `model.safetensors.index.json` (`weight_map`).
 * Headers are validated ({@link parseHeader}) before any offset is used, and no buffer larger
 * than the file is ever allocated. Tensors keep their stored dtype.
 *
 * @module
 */

import { basename, join } from "node:path";
import { ModelError } from "./errors.ts";
import { readBoundedFile, SHARD_INDEX_LIMIT } from "./readBounded.ts";
import {
  HEADER_LENGTH_BYTES,
  parseHeader,
  parseHeaderLength,
  type SafetensorsEntry,
} from "./safetensorsHeader.ts";
import type { Tensor } from "./types.ts";

/** File name of a single-file checkpoint. */
export const SINGLE_FILE = "model.safetensors";
/** File name of the shard index of a sharded checkpoint. */
export const INDEX_FILE = "model.safetensors.index.json";

/** Progress callback: bytes of tensor data read so far, and in total. */
export type ProgressCallback = (done: number, total: number) => void;

/** The validated header of one safetensors file. */
export interface SafetensorsHeader {
  /** Path of the file. */
  file: string;
  /** Absolute file offset of the data section (8 + header length). */
  dataStart: number;
  /** Validated entries, in header order. */
  entries: SafetensorsEntry[];
}

/** Reads and validates the header of a safetensors file without reading tensor data. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await openExisting(file, `${file}: not found`);
  try {
    return await readHeaderFrom(handle, file);
  } finally {
    handle.close();
  }
}

/**
 * Reads every tensor of one safetensors file (or only those in `names`, when given; a listed
 * name the file lacks is an error).
 */
export async function readSafetensors(
  file: string,
  names?: readonly string[],
  onTensorRead?: (bytes: number) => void,
): Promise<Map<string, Tensor>> {
  const handle = await openExisting(file, `${file}: not found`);
  try {
    const header = await readHeaderFrom(handle, file);
    let wanted = header.entries;
    if (names !== undefined) {
      const byName = new Map(header.entries.map((entry) => [entry.name, entry]));
      wanted = names.map((name) => {
        const entry = byName.get(name);
        if (entry === undefined) {
          throw new ModelError(
            `${file}: tensor "${name}" is listed in ${INDEX_FILE} but absent from this shard`,
          );
        }
        return entry;
      });
    }
    const tensors = new Map<string, Tensor>();
    for (const entry of wanted) {
      const data = new Uint8Array(entry.end - entry.begin);
      await readExactly(handle, header.dataStart + entry.begin, data, file, entry.name);
      tensors.set(entry.name, {
        name: entry.name,
        dtype: entry.dtype,
        shape: [...entry.shape],
        data,
      });
      onTensorRead?.(data.byteLength);
    }
    return tensors;
  } finally {
    handle.close();
  }
}

/**
 * Reads all tensors of a checkpoint folder: `model.safetensors.index.json` and its shards when
 * the index exists, else `model.safetensors`. Reports progress in bytes of tensor data.
 */
export async function readCheckpointTensors(
  dir: string,
  onProgress?: ProgressCallback,
): Promise<Map<string, Tensor>> {
  const indexFile = join(dir, INDEX_FILE);
  let shards: Map<string, string[] | undefined>;
  if (await fileExists(indexFile)) {
    shards = await readShardIndex(indexFile);
  } else if (await fileExists(join(dir, SINGLE_FILE))) {
    shards = new Map([[SINGLE_FILE, undefined]]);
  } else {
    throw new ModelError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} in the model folder`);
  }
  let total = 0;
  for (const [shard, names] of shards) {
    const header = await readSafetensorsHeader(join(dir, shard));
    const wanted = names === undefined ? undefined : new Set(names);
    for (const entry of header.entries) {
      if (wanted === undefined || wanted.has(entry.name)) total += entry.end - entry.begin;
    }
  }
  let done = 0;
  onProgress?.(0, total);
  const tensors = new Map<string, Tensor>();
  for (const [shard, names] of shards) {
    const shardTensors = await readSafetensors(join(dir, shard), names, (bytes) => {
      done += bytes;
      onProgress?.(done, total);
    });
    for (const [name, tensor] of shardTensors) tensors.set(name, tensor);
  }
  return tensors;
}

/**
 * Parses `model.safetensors.index.json` into shard file → tensor names. Shard names must be plain
 * file names in the same folder; every listed shard must exist.
 */
export async function readShardIndex(indexFile: string): Promise<Map<string, string[]>> {
  let json: unknown;
  const bytes = await readBoundedFile(indexFile, SHARD_INDEX_LIMIT, "a shard index");
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new ModelError(`${indexFile}: not valid JSON (${(error as Error).message})`);
  }
  const weightMap = isObject(json) ? json.weight_map : undefined;
  if (!isObject(weightMap)) {
    throw new ModelError(`${indexFile}: "weight_map" must be an object of tensor name → file`);
  }
  const shards = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "" || basename(shard) !== shard || shard === "..") {
      throw new ModelError(
        `${indexFile}: "weight_map" entry for "${name}" must be a file name in the same folder, ` +
          `got ${JSON.stringify(shard)}`,
      );
    }
    const names = shards.get(shard) ?? [];
    names.push(name);
    shards.set(shard, names);
  }
  const dir = indexFile.slice(0, indexFile.length - INDEX_FILE.length);
  for (const [shard, names] of shards) {
    if (!await fileExists(join(dir, shard))) {
      throw new ModelError(
        `${indexFile}: shard "${shard}" (holding "${names[0]}") is missing from the folder`,
      );
    }
  }
  return shards;
}

async function readHeaderFrom(handle: Deno.FsFile, file: string): Promise<SafetensorsHeader> {
  const fileSize = (await handle.stat()).size;
  const prefix = new Uint8Array(Math.min(HEADER_LENGTH_BYTES, fileSize));
  await readExactly(handle, 0, prefix, file, "header length");
  const headerLength = parseHeaderLength(prefix, fileSize, file);
  const headerBytes = new Uint8Array(headerLength);
  await readExactly(handle, HEADER_LENGTH_BYTES, headerBytes, file, "header");
  const dataStart = HEADER_LENGTH_BYTES + headerLength;
  const entries = parseHeader(headerBytes, fileSize - dataStart, file);
  return { file, dataStart, entries };
}

async function readExactly(
  handle: Deno.FsFile,
  position: number,
  target: Uint8Array,
  file: string,
  what: string,
): Promise<void> {
  await handle.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < target.byteLength) {
    const count = await handle.read(target.subarray(filled));
    if (count === null) {
      throw new ModelError(`${file}: unexpected end of file while reading ${what}`);
    }
    filled += count;
  }
}

async function openExisting(file: string, notFound: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(file, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ModelError(notFound);
    throw new ModelError(`${file}: cannot be opened (${(error as Error).message})`);
  }
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
