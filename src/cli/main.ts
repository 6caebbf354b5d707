/**
 * The `kvpolicy` command line: `run`, `check`, `fmt`, `eval`, `inspect`, `bench`,
 * `export`.
 * Exit codes: 0 ok, 1 user error (bad policy, flag or model folder), 2 internal error.
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import { checkCommand } from "./checkCommand.ts";
import { exportCommand } from "./exportCommand.ts";
import { envAllowed } from "./env.ts";
import { reportError, UserError } from "./errors.ts";
import { fmtCommand } from "./fmtCommand.ts";
import { runCommand } from "./runCommand.ts";
import { benchCommand } from "./benchCommand.ts";
import { inspectCommand } from "./inspectCommand.ts";
import { evalCommand } from "./evalCommand.ts";
import { openEvalEngine } from "../runtime/evalEngine.ts";

const USAGE = `usage: deno task <command> [...]
  run      generate with a policy applied to the KV cache
  check    check policies (--plan prints the compiled plan, --explain what it does)
  fmt      format policies canonically
  eval     compare policies on needle / RULER-style / perplexity tasks
  inspect  retrieval-head and lazy-layer scores
  bench    speed and memory, full vs compressed
  export   a runnable kvpress (PyTorch) script for a policy`;

type Command = (args: string[]) => number | Promise<number>;

const COMMANDS: Record<string, Command> = {
  check: checkCommand,
  fmt: fmtCommand,
  run: runCommand,
  eval: (args) =>
    evalCommand(args, {
      openEngine: (path) => openEvalEngine(path, { onCompile: compileProgress() }),
    }),
  inspect: inspectCommand,
  bench: benchCommand,
  export: exportCommand,
};

/**
 * Mesa's Vulkan driver complains on stderr when XDG_RUNTIME_DIR is unset. Only the tasks that may
 * open a GPU are allowed to touch the variable; the others (`fmt`) leave it alone.
 */
function quietMesaWarning(): void {
  const name = "XDG_RUNTIME_DIR";
  if (envAllowed(name) && !Deno.env.get(name)) Deno.env.set(name, "/tmp");
}

/** Runs one CLI invocation and returns its exit code (never throws). */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "--help" || name === "-h") {
    console.log(USAGE);
    return name ? 0 : 1;
  }
  quietMesaWarning();
  const command = COMMANDS[name];
  try {
    if (!command) throw new UserError(`unknown command '${name}'\n${USAGE}`);
    return await command(rest);
  } catch (e) {
    return reportError(e);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
