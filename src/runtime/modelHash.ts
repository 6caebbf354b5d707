/**
 * A checkpoint's identity for cached per-model results (the retrieval-head profile): a SHA-256
 * over the parts of its files that change with the architecture, the tensor layout or the
 * weights, read cheaply even from multi-GB checkpoints.
 *
 * @module
 */

import { isGgufPath } from "../model/ggufModel.ts";
import { parseHeaderLength } from "../model/safetensorsHeader.ts";
import { CONFIG_JSON_LIMIT, readBoundedFile } from "../model/readBounded.ts";

/** Bytes of tensor data hashed at each end of every safetensors file, and at the end of a GGUF. */
const HASHED_DATA_BYTES = 64 * 1024;
/** Bytes hashed from the start of a GGUF file (its header, then the first tensors). */
const HASHED_GGUF_HEAD_BYTES = 4 * 1024 * 1024;
/** What {@link modelHash} covers, written into profiles (`hash_of`). */
export const HASH_OF = {
  hf: "sha256: config.json + per *.safetensors: name, size, header, first/last 64 KiB",
  gguf: "sha256: the GGUF file's size, first 4 MiB and last 64 KiB",
};

/**
 * The model's identity for the profile: sha256 (hex) over `config.json` and, for every
 * `*.safetensors` file in name order, its name, size, JSON header and the first and last 64 KiB
 * of its tensor data — cheap on multi-GB checkpoints, and it changes with the architecture, the
 * tensor layout or (almost surely) retrained weights. For a GGUF file (`dir` ends in `.gguf`):
 * its size, its first 4 MiB (the header: metadata and tensor table, then data) and last 64 KiB.
 */
export async function modelHash(dir: string): Promise<string> {
  if (isGgufPath(dir)) return sha256Hex(await ggufIdentity(dir));
  const parts: Uint8Array[] = [
    await readBoundedFile(`${dir}/config.json`, CONFIG_JSON_LIMIT, "a config.json"),
  ];
  const enc = new TextEncoder();
  const files = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".safetensors")) files.push(e.name);
  }
  for (const name of files.sort()) {
    using file = await Deno.open(`${dir}/${name}`);
    const size = (await file.stat()).size;
    const prefix = await readAt(file, 0, 8);
    const dataStart = 8 + parseHeaderLength(prefix, size, name);
    const head = Math.min(size, dataStart + HASHED_DATA_BYTES);
    const tail = Math.max(head, size - HASHED_DATA_BYTES);
    parts.push(enc.encode(`\n${name}\n${size}\n`), await readAt(file, 0, head));
    parts.push(await readAt(file, tail, size - tail));
  }
  return sha256Hex(parts);
}

/** The parts of a GGUF file that {@link modelHash} covers. */
async function ggufIdentity(path: string): Promise<Uint8Array[]> {
  using file = await Deno.open(path);
  const size = (await file.stat()).size;
  const head = Math.min(size, HASHED_GGUF_HEAD_BYTES);
  const tail = Math.max(head, size - HASHED_DATA_BYTES);
  return [
    new TextEncoder().encode(`gguf\n${size}\n`),
    await readAt(file, 0, head),
    await readAt(file, tail, size - tail),
  ];
}

async function sha256Hex(parts: readonly Uint8Array[]): Promise<string> {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(out.subarray(done));
    if (n === null) throw new RangeError(`unexpected end of file at ${offset + done}`);
    done += n;
  }
  return out;
}

/** What {@link modelHash} covers for the model at `modelDir` (a folder or a GGUF file). */
export function hashDescription(modelDir: string): string {
  return isGgufPath(modelDir) ? HASH_OF.gguf : HASH_OF.hf;
}
