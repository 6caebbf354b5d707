/** Running kvpolicy as a subprocess, the way users do. @module */

/** The repository root (where deno.json and policies/ are). */
export const ROOT = new URL("../../", import.meta.url).pathname;

/** A finished subprocess: its exit code and decoded output. */
export interface Finished {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Runs `deno ARGS` in the repository root, without colors, with `env` added to ours. */
export async function runDeno(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** What an uncaught error prints: `Uncaught`, or a stack frame `at f (file.ts:1:2)`. */
export const STACK_TRACE: RegExp = /Uncaught|\bat\s.*\.(?:ts|js):\d+/;
