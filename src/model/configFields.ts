/**
 * Typed, validated access to the keys of a Hugging Face `config.json` object, with errors that
 * name the file and the key, and the `rope_scaling` / `rope_parameters` forms kvpolicy reads.
 *
 * @module
 */

import { ModelError } from "./errors.ts";
import type { RopeScaling } from "./rope.ts";
import { CONFIG_LIMITS } from "./configLimits.ts";

/** Reads a `rope_scaling` (or one `rope_parameters`) object found at `key`. */
export function parseRopeScaling(value: unknown, key: string, fields: ConfigFields): RopeScaling {
  if (value === undefined || value === null) return { kind: "none" };
  if (!isObject(value)) {
    throw new ModelError(`${fields.file}: "${key}" must be an object or null`);
  }
  const typeKey = value.rope_type !== undefined ? "rope_type" : "type";
  const type = value[typeKey];
  const at = (name: string) => fields.positiveNumberAt(value[name], `${key}.${name}`);
  if (type === "default" || (type === undefined && key.startsWith("rope_parameters"))) {
    return { kind: "none" };
  }
  if (type === "linear") return { kind: "linear", factor: at("factor") };
  if (type === "llama3") {
    const scaling: RopeScaling = {
      kind: "llama3",
      factor: at("factor"),
      lowFreqFactor: at("low_freq_factor"),
      highFreqFactor: at("high_freq_factor"),
      originalMaxPositions: at("original_max_position_embeddings"),
    };
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
      throw new ModelError(
        `${fields.file}: "${key}.high_freq_factor" must be greater than "${key}.low_freq_factor"`,
      );
    }
    return scaling;
  }
  throw new ModelError(
    `${fields.file}: "${key}.${typeKey}" ${JSON.stringify(type ?? null)} is not supported ` +
      `(supported: "linear", "llama3")`,
  );
}

/** Whether `value` is a plain JSON object. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Typed access to the keys of one config object, with errors that name the file and key. */
export class ConfigFields {
  readonly file: string;
  private readonly json: Record<string, unknown>;

  constructor(json: unknown, file: string) {
    if (!isObject(json)) throw new ModelError(`${file}: must hold a JSON object`);
    this.json = json;
    this.file = file;
  }

  raw(key: string): unknown {
    return this.json[key];
  }

  positiveInt(key: string, fallback?: number): number {
    const value = this.json[key];
    if ((value === undefined || value === null) && fallback !== undefined) return fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      throw new ModelError(
        `${this.file}: "${key}" must be a positive integer, got ${describe(value)}`,
      );
    }
    const max = CONFIG_LIMITS[key];
    if (max !== undefined && value > max) {
      throw new ModelError(
        `${this.file}: "${key}" is ${value}, over kvpolicy's limit of ${max}`,
      );
    }
    return value;
  }

  positiveNumber(key: string, fallback: number): number {
    const value = this.json[key];
    if (value === undefined || value === null) return fallback;
    return this.positiveNumberAt(value, key);
  }

  positiveNumberAt(value: unknown, key: string): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      throw new ModelError(
        `${this.file}: "${key}" must be a positive number, got ${describe(value)}`,
      );
    }
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.json[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") {
      throw new ModelError(`${this.file}: "${key}" must be true or false, got ${describe(value)}`);
    }
    return value;
  }

  /** A token id or a list of token ids; undefined when absent or null. */
  optionalTokenIds(key: string): number[] | undefined {
    const value = this.json[key];
    if (value === undefined || value === null) return undefined;
    const list = Array.isArray(value) ? value : [value];
    for (const id of list) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
        throw new ModelError(
          `${this.file}: "${key}" must be a token id or a list of token ids, got ${
            describe(value)
          }`,
        );
      }
    }
    return list as number[];
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing (the key is missing)";
  const text = JSON.stringify(value);
  return text.length > 40 ? text.slice(0, 40) + "…" : text;
}
