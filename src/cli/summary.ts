/**
 * The one-paragraph summary `run` prints after generating.
 *
 * @module
 */

import type { GenerationResult } from "../runtime/engine.ts";

/** Human-readable bytes (KiB/MiB). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** `N tokens · prefill … · decode … · TTFT … · KV … · peak KV …, device …`. */
export function formatSummary(promptTokens: number, r: GenerationResult): string {
  const t = r.timing;
  return [
    `${r.tokens.length} tokens generated from a ${promptTokens}-token prompt (${r.stopReason})`,
    `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s${
      t.pressMs > 0 ? ` (press ${t.pressMs.toFixed(0)} ms)` : ""
    }`,
    `decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s`,
    `time to first token ${t.ttftMs.toFixed(0)} ms`,
    `KV ${formatBytes(r.kv.keptBytes)} kept of ${formatBytes(r.kv.fullBytes)} full (${
      (r.kv.ratio * 100).toFixed(1)
    }%, ${r.kv.dtype})`,
    `peak KV ${formatBytes(r.kv.peakBytes)}, device ${formatBytes(r.deviceMemory.peakBytes)}`,
  ].join(" · ");
}

/**
 * `run --json`'s `device_memory`: the most bytes live at once in the device's buffers during the
 * generation, and the weights' share (see `GenerationResult.deviceMemory`).
 */
export function deviceMemoryJson(
  r: GenerationResult,
): { peak_bytes: number; weight_bytes: number } {
  return { peak_bytes: r.deviceMemory.peakBytes, weight_bytes: r.deviceMemory.weightBytes };
}
