/**
 * Where a policy comes from: a file, a name from `policies/`, or inline text pasted on the
 * command line (`'layers lazy -> window 4; else -> snap(k=1024)'`).
 *
 * @module
 */

import { UserError } from "./errors.ts";

/** A policy's text and the name its diagnostics use. */
export interface PolicySource {
  /** File path, or `<inline>` for pasted text. */
  file: string;
  /** The policy text. */
  text: string;
  /** Whether `text` came from the command line rather than a file. */
  inline: boolean;
}

const POLICIES_DIR = new URL("../../policies/", import.meta.url);

function readIfFile(path: string | URL): string | undefined {
  try {
    if (!Deno.statSync(path).isFile) return undefined;
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new UserError(`cannot read '${path}': permission denied`);
    }
    if (e instanceof TypeError || e instanceof Deno.errors.InvalidData) {
      throw new UserError(`'${path}' is not valid UTF-8 text`);
    }
    return undefined;
  }
}

/**
 * Resolves a `--policy` / `check` / `fmt` argument: an existing file, then a shipped policy name
 * (`snapkv` → `policies/snapkv.kvp`), then inline text if it looks like a policy.
 */
export function readPolicySource(arg: string): PolicySource {
  const fromFile = readIfFile(arg);
  if (fromFile !== undefined) return { file: arg, text: fromFile, inline: false };
  if (/^[a-z0-9][a-z0-9_-]*$/.test(arg)) {
    const shipped = new URL(`${arg}.kvp`, POLICIES_DIR);
    const text = readIfFile(shipped);
    if (text !== undefined) return { file: `policies/${arg}.kvp`, text, inline: false };
  }
  if (/->|;|\n/.test(arg)) return { file: "<inline>", text: arg, inline: true };
  throw new UserError(
    `no policy file '${arg}' (and it is not a shipped policy name or inline policy text, which contains '->')`,
  );
}
