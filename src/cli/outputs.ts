/**
 * Named outputs (`eval --out DIR`, `inspect --out DIR`, `bench --out FILE`), checked before any
 * work starts: the task's permission covers the path (the tasks may write only under their
 * documented folders: `out/` for eval and inspect, `bench/` for bench), an existing path is of the
 * right kind, and the folder exists. Files are then written atomically
 * ({@link writeFileAtomicSync}): a link among the outputs is replaced, never followed.
 *
 * @module
 */

import { writeFileAtomicSync } from "../atomicWrite.ts";
import { UserError } from "./errors.ts";

/** Refuses a path the task's write permission does not cover, naming the folder it does. */
function requireWritable(command: string, path: string, allowed: string): void {
  if (Deno.permissions.querySync({ name: "write", path }).state !== "granted") {
    throw new UserError(
      `${command} --out '${path}': the ${command} task writes only under ${allowed}/ ` +
        `(choose --out ${allowed}/NAME)`,
    );
  }
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new UserError(`cannot inspect '${path}': ${(e as Error).message}`);
  }
}

/**
 * Prepares `--out DIR` for `files` before the work: refuses a path the task may not write (naming
 * the folder it may: `allowed`), a path that is a file, or a link; creates the folder; says on
 * stderr which earlier outputs will be replaced.
 */
export function prepareOutputDir(
  command: string,
  dir: string,
  files: string[],
  allowed: string,
): void {
  requireWritable(command, dir, allowed);
  const info = lstatOrNull(dir);
  if (info?.isSymlink) throw new UserError(`${command} --out '${dir}' is a link; name a folder`);
  if (info && !info.isDirectory) {
    throw new UserError(`${command} --out '${dir}' exists and is not a folder`);
  }
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`${command} --out: cannot create '${dir}': ${(e as Error).message}`);
  }
  const earlier = files.filter((f) => lstatOrNull(`${dir}/${f}`) !== null);
  if (earlier.length) {
    const list = earlier.length > 1
      ? `${earlier.slice(0, -1).join(", ")} and ${earlier.at(-1)}`
      : earlier[0];
    console.error(`${command}: ${list} in ${dir} will be replaced`);
  }
}

/** Checks `--out FILE` before the work: the task may write it and it is not a folder. */
export function prepareOutputFile(command: string, file: string, allowed: string): void {
  requireWritable(command, file, allowed);
  const info = lstatOrNull(file);
  if (info?.isDirectory) throw new UserError(`${command} --out '${file}' is a folder; name a file`);
  const slash = file.lastIndexOf("/");
  if (slash > 0 && !lstatOrNull(file.slice(0, slash))?.isDirectory) {
    throw new UserError(`${command} --out '${file}': no folder ${file.slice(0, slash)}`);
  }
}

/** Writes one named output atomically; failures are user errors naming the file. */
export function writeOutput(command: string, path: string, text: string): void {
  try {
    writeFileAtomicSync(path, text);
  } catch (e) {
    throw new UserError(`${command} --out: cannot write '${path}': ${(e as Error).message}`);
  }
}
