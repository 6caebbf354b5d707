/**
 * Replacing a file without ever leaving it half-written: the bytes go to a new temporary file in
 * the same folder (created exclusively, so never through an existing file or link), are flushed
 * to disk, and the temporary file is renamed over the target. A rename is atomic within one file
 * system, and it replaces a link itself, never the file the link points to. On any failure — a
 * full disk, a read-only folder — the target is untouched and the temporary file is removed.
 *
 * Used for every file kvpolicy rewrites or caches: `fmt`'s policies, retrieval-head profiles.
 *
 * @module
 */

function temporaryBeside(path: string): string {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const name = path.slice(slash + 1);
  const salt = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  return `${dir}/.${name}.${Deno.pid}-${salt}.tmp`;
}

/** Options of {@link writeFileAtomicSync}. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file, set exactly (default: 0o644 less the umask). */
  mode?: number;
}

/**
 * Writes `data` to `path` atomically (see the module doc): afterwards `path` holds either its old
 * content or all of `data`, never a part. Throws the file system's error on failure.
 */
export function writeFileAtomicSync(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): void {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = temporaryBeside(path);
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(tmp, { write: true, createNew: true, mode: options.mode ?? 0o644 });
    if (options.mode !== undefined) Deno.chmodSync(tmp, options.mode); // exactly, not umasked
    for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
    file.syncSync();
    file.close();
    file = undefined;
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already failing */ }
    try {
      Deno.removeSync(tmp);
    } catch { /* never created, or already renamed */ }
    throw e;
  }
}
