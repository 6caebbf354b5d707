/**
 * Parsing of grid flags and suite fields: context lengths (`1k,2k,4k`, `k` = 1024) and needle
 * depths in percent (`0:100:10` = start:stop:step inclusive, or a list `0,50,100`).
 *
 * @module
 */

import { UserError } from "../userError.ts";

/** Parses one length: `4096`, `4k` (= 4096), `0.5k` (= 512). */
export function parseLength(text: string | number): number {
  const raw = String(text).trim().toLowerCase();
  const match = /^(\d+(?:\.\d+)?)(k?)$/.exec(raw);
  const value = match ? Number(match[1]) * (match[2] ? 1024 : 1) : NaN;
  if (!Number.isInteger(value) || value < 16) {
    throw new UserError(
      `a context length must be a whole number of tokens ≥ 16 (e.g. 1k, 4096), not '${text}'`,
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
    depths = [];
    // Round to avoid 0.1-step drift; stop is included when it lies on the grid.
    for (let i = 0; start + i * step <= stop + 1e-9; i++) {
      depths.push(Math.round((start + i * step) * 1e6) / 1e6);
    }
  } else {
    const items = Array.isArray(spec) ? spec : spec.split(",").filter((s) => s.trim() !== "");
    depths = items.map(parsePercent);
  }
  if (depths.length === 0) throw new UserError("--depths needs at least one depth");
  return [...new Set(depths)].sort((a, b) => a - b);
}
