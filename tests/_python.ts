/**
 * Python-side references for tests (Hugging Face transformers, the `gguf` package): whether
 * python3 can import what a test needs, and running a reference script. Tests that need Python
 * pass {@link pythonMissing} as `ignore`, which prints a visible SKIP line naming what is absent;
 * `.ci/run` installs the packages so CI never skips them.
 *
 * @module
 */

/**
 * The Python interpreter tests run: `KVPOLICY_PYTHON` when set (`.ci/run` sets it to the one it
 * installed the packages into, since `npx` puts /usr/bin first on PATH), else `python3`.
 */
export const PYTHON: string = Deno.env.get("KVPOLICY_PYTHON") || "python3";

const checked = new Map<string, string | null>();

/**
 * Returns `true` (and prints a SKIP line once per module set) when python3 or one of `modules`
 * cannot be imported.
 */
export function pythonMissing(modules: readonly string[], what: string): boolean {
  const key = modules.join(",");
  if (!checked.has(key)) {
    let problem: string | null = null;
    try {
      const out = new Deno.Command(PYTHON, {
        args: ["-c", `import ${key}`],
        stdout: "null",
        stderr: "piped",
      }).outputSync();
      if (!out.success) {
        const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
        problem = lines[lines.length - 1];
      }
    } catch {
      problem = "python3 is not installed";
    }
    checked.set(key, problem);
    if (problem !== null) {
      console.warn(`SKIP: ${what}: needs python3 with ${modules.join(", ")} (${problem}).`);
    }
  }
  return checked.get(key) !== null;
}

/** Runs `python3 script args...`; throws with its stderr when it fails. */
export async function runPython(script: string, args: readonly string[]): Promise<string> {
  const out = await new Deno.Command(PYTHON, {
    args: [script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!out.success) {
    throw new Error(`python3 ${script} failed:\n${text(out.stderr).slice(-4000)}`);
  }
  return text(out.stdout);
}
