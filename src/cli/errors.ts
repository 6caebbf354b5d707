/**
 * CLI error handling: user errors exit 1 with a one-paragraph message, internal errors exit 2,
 * and neither prints a stack trace (unless `KVPOLICY_DEBUG=1`).
 *
 * @module
 */

import { PolicyError } from "../policy/diagnostics.ts";
import { UserError } from "../userError.ts";
import { optionalEnv } from "./env.ts";

export { UserError };

/** Errors whose class marks them as user errors (thrown by other layers, e.g. model loading). */
const USER_ERROR_NAMES = new Set(["UserError", "PolicyError", "ModelError", "GpuError"]);

/** Maps an error to an exit code and prints it. */
export function reportError(e: unknown): number {
  const debug = optionalEnv("KVPOLICY_DEBUG") === "1";
  if (e instanceof PolicyError) {
    console.error(e.message);
    const errors = e.diagnostics.filter((d) => d.severity === "error").length;
    console.error(`\n${e.file}: ${errors} error${errors === 1 ? "" : "s"}`);
    return 1;
  }
  if (e instanceof Error && USER_ERROR_NAMES.has(e.name)) {
    console.error(`error: ${e.message}`);
    if (debug) console.error(e.stack);
    return 1;
  }
  const message = e instanceof Error ? e.message : String(e);
  console.error(`internal error: ${message}`);
  console.error("this is a bug in kvpolicy; rerun with KVPOLICY_DEBUG=1 for details");
  if (debug && e instanceof Error) console.error(e.stack);
  return 2;
}
