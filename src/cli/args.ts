/**
 * Flag parsing for the subcommands (`node:util` `parseArgs`), turning its errors into
 * {@link UserError}s.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UserError } from "./errors.ts";

/** Options accepted by a subcommand, in `parseArgs` form. */
export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

/** The commands that take positional arguments (policy files); the others take only flags. */
export const COMMANDS_WITH_POSITIONALS: ReadonlySet<string> = new Set(["check", "fmt", "export"]);

/**
 * Parses `args` strictly; unknown flags and missing values are user errors, and so is any
 * positional argument of a command not in {@link COMMANDS_WITH_POSITIONALS} (it would otherwise
 * be ignored: `run 'else -> snap(k=64)'` would run with the full cache).
 */
export function parseFlags(
  command: string,
  args: string[],
  options: FlagSpec,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new UserError(`${command}: ${message.replace(/\. To specify a positional.*$/s, "")}`);
  }
  const { values, positionals } = parsed;
  if (positionals.length && !COMMANDS_WITH_POSITIONALS.has(command)) {
    const extra = positionals[0];
    const hint = /->|;/.test(extra) && "policy" in options
      ? `; to run this policy, pass it with --policy '${extra}'`
      : `; ${command} takes only flags (see --help)`;
    throw new UserError(`${command}: unexpected argument '${extra}'${hint}`);
  }
  return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
}

/**
 * Reads an integer flag in `[min, max]` (by default up to 2^53 - 1, the largest integer a number
 * holds exactly), or throws a user error naming it.
 */
export function intFlag(
  name: string,
  value: string | boolean | string[] | undefined,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^-?\d+$/.test(value) || n < min) {
    throw new UserError(`--${name} expects an integer ≥ ${min}, not '${value}'`);
  }
  if (n > max) {
    throw new UserError(`--${name} expects an integer from ${min} to ${max}, not '${value}'`);
  }
  return n;
}

/** Reads an integer flag that has no default: `undefined` when absent, else as {@link intFlag}. */
export function optionalIntFlag(
  name: string,
  value: string | boolean | string[] | undefined,
  min = 0,
): number | undefined {
  return value === undefined ? undefined : intFlag(name, value, 0, min);
}

/** Reads a number flag, or throws a user error naming it. */
export function numberFlag(
  name: string,
  value: string | boolean | string[] | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !Number.isFinite(n)) {
    throw new UserError(`--${name} expects a number, not '${value}'`);
  }
  return n;
}
