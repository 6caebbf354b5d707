/**
 * Environment variables the CLI can do without. Each task gets only the permissions its outputs
 * need (`fmt` has no `--allow-env`), so these helpers ask whether a variable may be used instead
 * of touching it: without the permission Deno would throw `NotCapable`, or prompt on a terminal.
 *
 * @module
 */

/** Whether this process may read and set `name` (never prompts). */
export function envAllowed(name: string): boolean {
  return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
}

/** The value of `name`, or `undefined` when it is unset or this process may not read it. */
export function optionalEnv(name: string): string | undefined {
  return envAllowed(name) ? Deno.env.get(name) : undefined;
}
