/**
 * The plugin registry: presses and detectors by name. Built-ins register themselves through
 * exactly this interface; third-party plugins use it too (through `mod.ts`).
 *
 * @module
 */

import type { DetectorSchema, PluginSchema, PressSchema } from "./schema.ts";

/** A name → schema map for presses and detectors, with lookup helpers for the checker. */
export class PluginRegistry {
  #presses = new Map<string, PressSchema>();
  #detectors = new Map<string, DetectorSchema>();

  /** Registers a press or detector; a name may be registered once per kind. */
  register(plugin: PluginSchema): void {
    if (!/^[a-z][a-z0-9_]*$/.test(plugin.name)) {
      throw new Error(`plugin name '${plugin.name}' must match [a-z][a-z0-9_]*`);
    }
    const map: Map<string, PluginSchema> = plugin.kind === "press"
      ? this.#presses
      : this.#detectors;
    if (map.has(plugin.name)) {
      throw new Error(`a ${plugin.kind} named '${plugin.name}' is already registered`);
    }
    const seen = new Set<string>();
    for (const p of plugin.params) {
      if (seen.has(p.name)) throw new Error(`${plugin.name}: duplicate parameter '${p.name}'`);
      seen.add(p.name);
    }
    map.set(plugin.name, plugin);
  }

  /** The press named `name`, if registered. */
  press(name: string): PressSchema | undefined {
    return this.#presses.get(name);
  }

  /** The detector named `name`, if registered. */
  detector(name: string): DetectorSchema | undefined {
    return this.#detectors.get(name);
  }

  /** All registered press names, sorted. */
  pressNames(): string[] {
    return [...this.#presses.keys()].sort();
  }

  /** All registered detector names, sorted. */
  detectorNames(): string[] {
    return [...this.#detectors.keys()].sort();
  }

  /** A copy of this registry (so a run can add plugins without touching the default one). */
  clone(): PluginRegistry {
    const copy = new PluginRegistry();
    for (const p of this.#presses.values()) copy.register(p);
    for (const d of this.#detectors.values()) copy.register(d);
    return copy;
  }
}
