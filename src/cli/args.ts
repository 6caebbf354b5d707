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

/** Parses `args` strictly; unknown flags and missing values are user errors. */
export function parseFlags(
  command: string,
  args: string[],
  options: FlagSpec,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return {
      values: values as Record<string, string | boolean | string[] | undefined>,
      positionals,
    };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new UserError(`${command}: ${message.replace(/\. To specify a positional.*$/s, "")}`);
  }
}

/** Reads an integer flag, or throws a user error naming it. */
export function intFlag(
  name: string,
  value: string | boolean | string[] | undefined,
  fallback: number,
  min = 0,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^-?\d+$/.test(value) || n < min) {
    throw new UserError(`--${name} expects an integer ≥ ${min}, not '${value}'`);
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
