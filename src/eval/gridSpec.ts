/**
 * Parsing of grid flags and suite fields: context lengths (`1k,2k,4k`, `k` = 1024) and needle
 * depths in percent (`0:100:10` = start:stop:step inclusive, or a list `0,50,100`).
 *
 * @module
 */

import { UserError } from "../userError.ts";

/** The most depths a grid may have: 1,001 (a step of 0.1 %). */
export const MAX_DEPTHS = 1001;
/** The longest context a grid may ask for: 16Mi tokens. */
export const MAX_LENGTH = 16 * 1024 * 1024;
/** The most samples per cell: 10,000. */
export const MAX_SAMPLES = 10_000;
/** The most generations one evaluation may plan (policies × tasks × cells × samples): 1,000,000. */
export const MAX_GENERATIONS = 1_000_000;

/** Parses one length: `4096`, `4k` (= 4096), `0.5k` (= 512). */
export function parseLength(text: string | number): number {
  const raw = String(text).trim().toLowerCase();
  const match = /^(\d+(?:\.\d+)?)(k?)$/.exec(raw);
  const value = match ? Number(match[1]) * (match[2] ? 1024 : 1) : NaN;
  if (!Number.isInteger(value) || value < 16 || value > MAX_LENGTH) {
    throw new UserError(
      `a context length must be a whole number of tokens from 16 to 16384k (e.g. 1k, 4096), ` +
        `not '${text}'`,
    );
  }
  return value;
}

/** Parses `1k,2k,4k` (or a list) into token counts, sorted, without duplicates. */
export function parseLengths(spec: string | (string | number)[]): number[] {
  const items = Array.isArray(spec) ? spec : spec.split(",").filter((s) => s.trim() !== "");
  if (items.length === 0) throw new UserError("--lengths needs at least one length");
  return [...new Set(items.map(parseLength))].sort((a, b) => a - b);
}

function parsePercent(text: string | number): number {
  const value = Number(String(text).trim().replace(/%$/, ""));
  if (String(text).trim() === "" || !Number.isFinite(value) || value < 0 || value > 100) {
    throw new UserError(`a depth is a percentage in 0..100, not '${text}'`);
  }
  return value;
}

/** Parses `0:100:10` (start:stop:step, stop included) or `0,25,50` into depths in percent. */
export function parseDepths(spec: string | (string | number)[]): number[] {
  let depths: number[];
  if (!Array.isArray(spec) && spec.includes(":")) {
    const parts = spec.split(":");
    if (parts.length !== 3) throw new UserError(`--depths expects start:stop:step, not '${spec}'`);
    const [start, stop] = [parsePercent(parts[0]), parsePercent(parts[1])];
    const step = Number(parts[2]);
    if (!(step > 0) || start > stop) {
      throw new UserError(`--depths '${spec}' needs start ≤ stop and a positive step`);
    }
    // Counted before any is made: a tiny step would otherwise fill memory.
    const count = Math.floor((stop - start) / step + 1e-9) + 1;
    if (count > MAX_DEPTHS) {
      throw new UserError(
        `--depths '${spec}' makes ${count} depths; at most ${MAX_DEPTHS} (use a larger step)`,
      );
    }
    depths = [];
    // Round to avoid 0.1-step drift; stop is included when it lies on the grid.
    for (let i = 0; start + i * step <= stop + 1e-9; i++) {
      depths.push(Math.round((start + i * step) * 1e6) / 1e6);
    }
  } else {
    const items = Array.isArray(spec) ? spec : spec.split(",").filter((s) => s.trim() !== "");
    if (items.length > MAX_DEPTHS) {
      throw new UserError(`--depths lists ${items.length} depths; at most ${MAX_DEPTHS}`);
    }
    depths = items.map(parsePercent);
  }
  if (depths.length === 0) throw new UserError("--depths needs at least one depth");
  return [...new Set(depths)].sort((a, b) => a - b);
}

/**
 * Refuses an evaluation that would plan more than {@link MAX_GENERATIONS} generations, before any
 * prompt is built: `policies × tasks × lengths × depths × samples` (depths count for every task,
 * an upper bound).
 */
export function checkGridSize(
  grid: {
    tasks: readonly unknown[];
    lengths: readonly number[];
    depths: readonly number[];
    samples: number;
  },
  policies: number,
): void {
  const total = policies * grid.tasks.length * grid.lengths.length * grid.depths.length *
    grid.samples;
  if (total > MAX_GENERATIONS) {
    throw new UserError(
      `this evaluation plans ${total} generations (${policies} policies × ${grid.tasks.length} ` +
        `tasks × ${grid.lengths.length} lengths × ${grid.depths.length} depths × ${grid.samples} ` +
        `samples); at most ${MAX_GENERATIONS}: use fewer depths, samples or policies`,
    );
  }
}
