/**
 * Loading third-party plugins: a module named by `use "./x.ts";` or `--plugin` exports its
 * presses and detectors (`export const plugins = [...]`, or a default export of one schema or a
 * list), which are registered through the same interface as the built-ins. The CLI loads plugin
 * code only with an explicit `--allow-plugins`; parsing and checking never execute code.
 *
 * @module
 */

import type { PluginRegistry } from "./registry.ts";
import type { PluginSchema } from "./schema.ts";

/** A plugin module could not be loaded or is malformed (a user-facing error). */
export class PluginLoadError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** File endings Deno imports as modules; a plugin is one of these. */
const MODULE_ENDINGS = /\.(ts|mts|js|mjs)$/;

/**
 * Resolves a plugin path against the directory of the policy that names it — an allow-list: a
 * plain local path (no URL scheme in any case: `npm:`, `HTTPS:`, `data:`, `file:` … are refused),
 * resolved through links to a regular file that exists and ends in .ts, .mts, .js or .mjs.
 * Plugin code may still import what it likes; the user vouched for it with `--allow-plugins`.
 */
export function resolvePluginUrl(path: string, baseDir: string): URL {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) {
    throw new PluginLoadError(
      `plugin '${path}': only local files load (a path like "./press.ts", not a URL)`,
    );
  }
  if (path.trim() === "" || path.includes("\0")) {
    throw new PluginLoadError(`plugin '${path}': not a file path`);
  }
  const base = baseDir.endsWith("/") ? baseDir : baseDir + "/";
  const joined = path.startsWith("/") ? path : base + path;
  let real: string;
  try {
    real = Deno.realPathSync(joined);
  } catch {
    throw new PluginLoadError(`plugin '${path}': no such file (${joined})`);
  }
  let isFile = false;
  try {
    isFile = Deno.statSync(real).isFile;
  } catch { /* reported below */ }
  if (!isFile) throw new PluginLoadError(`plugin '${path}': ${real} is not a regular file`);
  if (!MODULE_ENDINGS.test(real)) {
    throw new PluginLoadError(`plugin '${path}': a plugin is a .ts, .mts, .js or .mjs module`);
  }
  const url = new URL("file:///");
  url.pathname = real;
  return url;
}

function checkPlugin(p: unknown, where: string): PluginSchema {
  const o = p as Partial<PluginSchema> | null;
  if (!o || typeof o !== "object" || (o.kind !== "press" && o.kind !== "detector")) {
    throw new PluginLoadError(
      `${where}: each plugin must be an object with kind "press" or "detector"`,
    );
  }
  if (typeof o.name !== "string" || !Array.isArray(o.params) || typeof o.doc !== "string") {
    throw new PluginLoadError(`${where}: plugin '${String(o.name)}' needs name, params and doc`);
  }
  if (o.kind === "press" && o.role === "select" && typeof o.select !== "function") {
    throw new PluginLoadError(`${where}: press '${o.name}' selects entries but has no select()`);
  }
  if (o.kind === "detector" && typeof o.classify !== "function") {
    throw new PluginLoadError(`${where}: detector '${o.name}' has no classify()`);
  }
  return o as PluginSchema;
}

/** Imports each module and registers its plugins; returns the names registered. */
export async function loadPlugins(
  urls: URL[],
  registry: PluginRegistry,
): Promise<string[]> {
  const names: string[] = [];
  for (const url of urls) {
    const where = url.protocol === "file:" ? url.pathname : url.href;
    let mod: Record<string, unknown>;
    try {
      mod = await import(url.href);
    } catch (e) {
      const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
      throw new PluginLoadError(`cannot load plugin ${where}: ${why}`);
    }
    const exported = mod.plugins ?? mod.default;
    const list = Array.isArray(exported) ? exported : exported ? [exported] : [];
    if (list.length === 0) {
      throw new PluginLoadError(`${where} exports no plugins (export const plugins = [...])`);
    }
    for (const p of list) {
      const plugin = checkPlugin(p, where);
      try {
        registry.register(plugin);
      } catch (e) {
        throw new PluginLoadError(`${where}: ${e instanceof Error ? e.message : e}`);
      }
      names.push(plugin.name);
    }
  }
  return names;
}
