/**
 * Reading small input files safely: only regular files (after following links), and never more
 * than a cap. A model folder's `config.json` that is a link to `/dev/zero` would otherwise be read
 * until memory runs out, and one that is a FIFO would block forever.
 *
 * @module
 */

import { ModelError } from "./errors.ts";

const MiB = 1024 * 1024;

/** The largest `config.json` read: 1 MiB (real ones are a few KiB). */
export const CONFIG_JSON_LIMIT: number = 1 * MiB;
/** The largest `tokenizer.json` / `tokenizer_config.json` read: 64 MiB (big vocabularies: ~35 MB). */
export const TOKENIZER_JSON_LIMIT: number = 64 * MiB;
/** The largest `chat_template.jinja` read: 1 MiB (real templates are a few KiB). */
export const CHAT_TEMPLATE_LIMIT: number = 1 * MiB;
/** The largest `model.safetensors.index.json` read: 16 MiB (real ones are ~100 KiB). */
export const SHARD_INDEX_LIMIT: number = 16 * MiB;
/** The largest eval suite YAML read: 1 MiB. */
export const SUITE_FILE_LIMIT: number = 1 * MiB;
/** The largest `--prompt-file` read: 64 MiB. */
export const PROMPT_FILE_LIMIT: number = 64 * MiB;

/** `limit` in words: `1 MiB`, or a byte count. */
export function formatLimit(limit: number): string {
  return limit % MiB === 0 ? `${limit / MiB} MiB` : `${limit} bytes`;
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "an unknown kind of file";
}

function checkInfo(path: string, info: Deno.FileInfo, limit: number, what: string): void {
  if (!info.isFile) {
    throw new ModelError(`${path}: not a regular file (${kindOf(info)}); ${what} must be one`);
  }
  if (info.size > limit) {
    throw new ModelError(
      `${path}: too large (${info.size} bytes; the limit for ${what} is ${formatLimit(limit)})`,
    );
  }
}

/** A read buffer that grows up to one byte past the cap, so that going over it is noticed. */
class CappedBuffer {
  private buffer: Uint8Array;
  private length = 0;

  constructor(size: number, private path: string, private limit: number, private what: string) {
    this.buffer = new Uint8Array(Math.min(size, limit) + 1);
  }

  /** Where the next read goes; throws when the bytes so far are over the cap. */
  room(): Uint8Array {
    if (this.length === this.buffer.length) {
      if (this.length > this.limit) {
        // The file grew after its size was checked, or reports none (/proc).
        const cap = formatLimit(this.limit);
        throw new ModelError(`${this.path}: too large (the limit for ${this.what} is ${cap})`);
      }
      const grown = new Uint8Array(Math.min(Math.max(2 * this.length, 65536), this.limit + 1));
      grown.set(this.buffer);
      this.buffer = grown;
    }
    return this.buffer.subarray(this.length);
  }

  /** Records `n` bytes read into {@link room}. */
  add(n: number): void {
    this.length += n;
  }

  /** The bytes read. */
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

/** Rethrows `NotFound` and {@link ModelError}s; wraps anything else in a ModelError. */
function readError(path: string, error: unknown): Error {
  if (error instanceof ModelError || error instanceof Deno.errors.NotFound) return error;
  return new ModelError(`${path}: cannot be read (${(error as Error).message})`);
}

/**
 * Reads the file at `path` if it is a regular file (links are followed) of at most `limit` bytes.
 * `what` names the file in messages ("a config.json"). A missing file rethrows Deno's `NotFound`
 * for the caller to handle; every other problem is a {@link ModelError} naming `path`.
 */
export async function readBoundedFile(
  path: string,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  let file: Deno.FsFile | undefined;
  try {
    // stat first: opening a FIFO for reading blocks until a writer appears.
    checkInfo(path, await Deno.stat(path), limit, what);
    file = await Deno.open(path);
    const info = await file.stat(); // the file actually opened (it may have been replaced)
    checkInfo(path, info, limit, what);
    const out = new CappedBuffer(info.size, path, limit, what);
    for (let n; (n = await file.read(out.room())) !== null;) out.add(n);
    return out.bytes();
  } catch (error) {
    throw readError(path, error);
  } finally {
    file?.close();
  }
}

/** {@link readBoundedFile}, synchronously. */
export function readBoundedFileSync(path: string, limit: number, what: string): Uint8Array {
  let file: Deno.FsFile | undefined;
  try {
    checkInfo(path, Deno.statSync(path), limit, what);
    file = Deno.openSync(path);
    const info = file.statSync();
    checkInfo(path, info, limit, what);
    const out = new CappedBuffer(info.size, path, limit, what);
    for (let n; (n = file.readSync(out.room())) !== null;) out.add(n);
    return out.bytes();
  } catch (error) {
    throw readError(path, error);
  } finally {
    file?.close();
  }
}

/**
 * `bytes` read from `path` as text, strictly UTF-8: a {@link ModelError} naming the file for any
 * invalid sequence (instead of silently substituting U+FFFD).
 */
export function decodeUtf8(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ModelError(`${path}: not valid UTF-8`);
  }
}
