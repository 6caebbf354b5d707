/**
 * Where a policy comes from: a file, a name from `policies/`, or inline text pasted on the
 * command line (`'layers lazy -> window 4; else -> snap(k=1024)'`).
 *
 * @module
 */

import { ModelError } from "../model/errors.ts";
import { readBoundedFileSync } from "../model/readBounded.ts";
import { UserError } from "./errors.ts";

/** A policy's text and the name its diagnostics use. */
export interface PolicySource {
  /** File path, or `<inline>` for pasted text. */
  file: string;
  /** The policy text. */
  text: string;
  /** Whether `text` came from the command line rather than a file. */
  inline: boolean;
  /** The file began with a UTF-8 byte order mark (not part of `text`; `fmt` drops it). */
  bom?: boolean;
}

const POLICIES_DIR = new URL("../../policies/", import.meta.url);

/** The largest policy file read: 4 MiB (the parser refuses text over 1 Mi characters anyway). */
export const POLICY_FILE_LIMIT = 4 * 1024 * 1024;

/** The UTF-8 byte order mark; accepted at the start of a policy file and not part of its text. */
const BOM = "\uFEFF";

/**
 * Offset of the first byte sequence that is not well-formed UTF-8 (the Unicode standard's
 * table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF), or -1 when all are.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    const extra = b >= 0xc2 && b <= 0xdf
      ? 1
      : b >= 0xe0 && b <= 0xef
      ? 2
      : b >= 0xf0 && b <= 0xf4
      ? 3
      : 0;
    if (extra === 0) return i;
    // the second byte's range depends on the first; later ones are plain continuations
    const low = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const high = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (i + 1 >= bytes.length || bytes[i + 1] < low || bytes[i + 1] > high) return i;
    for (let k = 2; k <= extra; k++) {
      if (i + k >= bytes.length || (bytes[i + k] & 0xc0) !== 0x80) return i;
    }
    i += extra + 1;
  }
  return -1;
}

/** Decodes a policy file's bytes: strict UTF-8 (no silent U+FFFD), a leading BOM dropped. */
export function decodePolicyBytes(path: string, bytes: Uint8Array): { text: string; bom: boolean } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const hex = bytes[at].toString(16).padStart(2, "0");
    throw new UserError(`${path}: not valid UTF-8 (byte 0x${hex} at byte offset ${at})`);
  }
  const bom = text.startsWith(BOM);
  return { text: bom ? text.slice(1) : text, bom };
}

function readIfFile(path: string | URL): { text: string; bom: boolean } | undefined {
  let bytes: Uint8Array;
  try {
    if (!Deno.statSync(path).isFile) return undefined;
    bytes = readBoundedFileSync(
      String(path instanceof URL ? path.pathname : path),
      POLICY_FILE_LIMIT,
      "a policy file",
    );
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new UserError(`cannot read '${path}': permission denied`);
    }
    if (e instanceof ModelError) throw new UserError(e.message);
    return undefined;
  }
  return decodePolicyBytes(String(path instanceof URL ? path.pathname : path), bytes);
}

/**
 * Resolves a `--policy` / `check` / `fmt` argument: an existing file, then a shipped policy name
 * (`snapkv` → `policies/snapkv.kvp`), then inline text if it looks like a policy.
 */
export function readPolicySource(arg: string): PolicySource {
  const fromFile = readIfFile(arg);
  if (fromFile !== undefined) return { file: arg, ...fromFile, inline: false };
  if (/^[a-z0-9][a-z0-9_-]*$/.test(arg)) {
    const shipped = new URL(`${arg}.kvp`, POLICIES_DIR);
    const read = readIfFile(shipped);
    if (read !== undefined) return { file: `policies/${arg}.kvp`, ...read, inline: false };
  }
  if (/->|;|\n/.test(arg)) return { file: "<inline>", text: arg, inline: true };
  throw new UserError(
    `no policy file '${arg}' (and it is not a shipped policy name or inline policy text, which contains '->')`,
  );
}
