/**
 * The kvpress side of the cross-engine tests: the Python interpreter that has kvpress 0.5.5 (a
 * virtual environment, because kvpress pins transformers < 5.3 while the GGUF references use a
 * newer one), and running the `kvpolicy_kvpress` bridge from this working tree.
 *
 * @module
 */

import { ROOT } from "../cli/_helpers.ts";

/**
 * `KVPOLICY_KVPRESS_PYTHON` when set, else `.venv-kvpress/bin/python` in the repository (what
 * `.ci/run` creates).
 */
export const KVPRESS_PYTHON: string = Deno.env.get("KVPOLICY_KVPRESS_PYTHON") ||
  `${ROOT}.venv-kvpress/bin/python`;

let missing: string | null | undefined;

/** `true` (and a visible SKIP line, once) when that interpreter cannot import kvpress. */
export function kvpressMissing(what: string): boolean {
  if (missing === undefined) {
    missing = null;
    try {
      const out = new Deno.Command(KVPRESS_PYTHON, {
        args: ["-c", "import kvpress, torch"],
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      if (!out.success) {
        missing = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "failed";
      }
    } catch {
      missing = `${KVPRESS_PYTHON} does not exist`;
    }
  }
  if (missing !== null) {
    console.warn(
      `SKIP: ${what}: needs kvpress in ${KVPRESS_PYTHON} (${missing}); .ci/run makes it.`,
    );
  }
  return missing !== null;
}

/** A finished bridge call. */
export interface BridgeRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `python ARGS` with the working tree's bridge first on the import path. */
export async function runBridge(args: string[], cwd = ROOT): Promise<BridgeRun> {
  const out = await new Deno.Command(KVPRESS_PYTHON, {
    args,
    cwd,
    env: { PYTHONPATH: `${ROOT}python`, HF_HUB_OFFLINE: "1", TOKENIZERS_PARALLELISM: "false" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}
