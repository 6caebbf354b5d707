/**
 * Turns a `--policy` / `check` argument into a compiled plan and the plugin registry it was
 * checked against, loading third-party plugin code (`use "./x.ts";`, `--plugin`) only when the
 * user passed `--allow-plugins`.
 *
 * @module
 */

import { compileOrThrow } from "../plan/compile.ts";
import type { Plan } from "../plan/plan.ts";
import { defaultRegistry } from "../plugins/builtins.ts";
import { loadPlugins, resolvePluginUrl } from "../plugins/loadPlugins.ts";
import type { PluginRegistry } from "../plugins/registry.ts";
import { parsePolicy } from "../policy/parse.ts";
import { UserError } from "./errors.ts";
import { type PolicySource, readPolicySource } from "./policySource.ts";

/** How plugins may be loaded. */
export interface PluginOptions {
  /** The user trusts plugin code (`--allow-plugins`). */
  allowPlugins: boolean;
  /** Extra plugin modules from `--plugin` (paths relative to the working directory). */
  plugins: string[];
}

/** A compiled policy, its source and the registry (built-ins + loaded plugins). */
export interface LoadedPolicy {
  /** The policy text and name. */
  source: PolicySource;
  /** The compiled plan. */
  plan: Plan;
  /** The registry the plan was checked against. */
  registry: PluginRegistry;
}

/** The `use` paths of a policy (parsing only; no code runs). */
export function policyImports(text: string): string[] {
  return parsePolicy(text).ast.statements.flatMap((s) => (s.kind === "use" ? [s.path] : []));
}

/** Builds the registry for a policy: built-ins, plus its plugins when allowed. */
export async function registryFor(source: PolicySource, o: PluginOptions): Promise<PluginRegistry> {
  const imports = policyImports(source.text);
  const registry = defaultRegistry();
  if ((imports.length || o.plugins.length) && !o.allowPlugins) {
    const named = [...imports, ...o.plugins].map((p) => `"${p}"`).join(", ");
    throw new UserError(
      `${source.file} needs plugin code (${named}); plugins run arbitrary code, so kvpolicy loads them only with --allow-plugins`,
    );
  }
  const policyDir = source.inline ? Deno.cwd() : dirnameOf(source.file);
  const urls = [
    ...imports.map((p) => resolvePluginUrl(p, policyDir)),
    ...o.plugins.map((p) => resolvePluginUrl(p, Deno.cwd())),
  ];
  if (urls.length) await loadPlugins(urls, registry);
  return registry;
}

function dirnameOf(file: string): string {
  const abs = file.startsWith("/") ? file : `${Deno.cwd()}/${file}`;
  return abs.slice(0, abs.lastIndexOf("/")) || "/";
}

/** Reads, (loads plugins for,) and compiles a policy argument. */
export async function loadPolicy(arg: string, o: PluginOptions): Promise<LoadedPolicy> {
  const source = readPolicySource(arg);
  const registry = await registryFor(source, o);
  const plan = compileOrThrow(source.text, source.file, registry);
  return { source, plan, registry };
}
