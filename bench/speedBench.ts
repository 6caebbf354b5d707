/**
 * The speed and memory benchmark behind `deno task bench`: for several prompt lengths and
 * policies, side by side in one process, prefill and decode tokens/s, time to first token, KV
 * bytes, the time spent scoring/selecting/compacting, and the ratios to `full`; medians and
 * spreads over repetitions; in each repetition every policy prefills, then every policy decodes,
 * back to back (a `PhaseGate`). Each policy first runs once,
 * untimed, on a short prompt, so that compiling its kernels is not timed. Peak device memory comes
 * from one more run of each policy alone, untimed (side by side, all their buffers coexist).
 *
 * @module
 */

import { compileOrThrow } from "../src/plan/compile.ts";
import type { Plan } from "../src/plan/plan.ts";
import type { Engine, GenerationResult } from "../src/runtime/engine.ts";
import { checkExecutable } from "../src/runtime/executable.ts";
import { generateWithPlan } from "../src/runtime/planGeneration.ts";
import type { PressTiming } from "../src/runtime/pressClock.ts";
import { PhaseGate } from "../src/runtime/phaseGate.ts";

/** One measured policy × prompt length. */
export interface BenchRow {
  /** Policy text. */
  policy: string;
  /** Prompt length. */
  prompt_tokens: number;
  /** Median prefill tokens/s. */
  prefill_tok_s: number;
  /** Median decode tokens/s. */
  decode_tok_s: number;
  /** Median time to first token (ms). */
  ttft_ms: number;
  /** KV bytes held after generation. */
  kv_bytes: number;
  /** The most KV bytes allocated at once during the generation (`KvReport.peakBytes`). */
  peak_kv_bytes: number;
  /**
   * The most device-buffer bytes live at once (weights included; `GpuContext.memory`), measured
   * in a run of this policy alone after the timed ones.
   */
  peak_device_bytes: number;
  /** Median time in scoring + selection + compaction (ms). */
  press_ms: number;
  /** Median part of press_ms reading scores back from the GPU (votes, windows, keys). */
  press_read_ms: number;
  /** Median part of press_ms on the CPU: detectors, scoring, top-k selection. */
  press_select_ms: number;
  /** Median rest of press_ms: compaction / quantisation, encoded and run on the GPU. */
  press_compact_ms: number;
  /** press_ms / prefill time. */
  press_share: number;
  /** decode_tok_s / full's. */
  decode_ratio: number;
  /** kv_bytes / full's. */
  kv_ratio: number;
  /** peak_kv_bytes / full's. */
  peak_kv_ratio: number;
  /** Spread of decode tok/s over repetitions: [min, max]. */
  decode_spread: [number, number];
  /** Repetitions. */
  repeats: number;
}

/** What to measure. */
export interface BenchPlan {
  /** Prompt lengths. */
  lengths: number[];
  /** Policies (their text); the first is the ratios' reference (`else -> full` by default). */
  policies: string[];
  /** How the rows name each policy (default: its text). */
  labels?: string[];
  /** Tokens decoded per run. */
  decodeTokens: number;
  /** Repetitions per cell. */
  repeats: number;
  /** Prompt tokens per prefill chunk (default: the engine's, `defaultPrefillChunk`). */
  prefillChunk?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * One generation with `plan` applied, all new tokens read back at once. The first call for a plan
 * also runs it untimed on a short prefix (`generateWithPlan`'s warm-up), compiling its kernels.
 */
async function runOnce(
  engine: Engine,
  plan: Plan,
  ids: number[],
  newTokens: number,
  gate: PhaseGate,
  prefillChunk?: number,
): Promise<{ result: GenerationResult; press: PressTiming }> {
  const req = {
    promptIds: ids,
    maxNewTokens: newTokens,
    stopIds: [],
    readEvery: newTokens,
    prefillChunk,
    gate,
  };
  const { result, executor } = await generateWithPlan(engine, plan, req, undefined, true);
  return { result, press: executor.timing };
}

/** The timings of one policy's runs at one length. */
interface Samples {
  prefill: number[];
  decode: number[];
  ttft: number[];
  press: number[];
  read: number[];
  select: number[];
  compact: number[];
  prefillMs: number[];
  kvBytes: number;
  peakKvBytes: number;
  peakDeviceBytes: number;
}

/**
 * Runs the plan on `engine`; `onRow` sees each row as it is measured. Every policy first runs once
 * untimed on a short prompt (compiling its kernels; once per engine). Then, at each length and in
 * each repetition, all policies' generations are alive at once and take turns through a
 * {@link PhaseGate}: every policy's prefill (with its press), then every policy's decode, back to
 * back — so the decode rates compared in a row are measured within seconds of each other, not
 * minutes apart with prefills in between, and a slow minute of a shared machine lands on every
 * policy alike; one more run of each policy alone then measures its peak device memory. With one
 * repetition (`bench --quick`) each policy runs alone, one after the other, and its peak device
 * memory is read from that run: a third of the prefills, no spread.
 */
export async function runSpeedBench(
  engine: Engine,
  plan: BenchPlan,
  onRow?: (row: BenchRow) => void,
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const V = engine.config.vocabSize;
  const runnable = plan.policies.flatMap((text, i) => {
    const compiled = compileOrThrow(text);
    const policy = plan.labels?.[i] ?? text;
    try {
      checkExecutable(compiled);
      return [{ policy, compiled }];
    } catch {
      return []; // not executable yet: left out of the table (the caller notes it)
    }
  });
  for (const length of plan.lengths) {
    const ids = Array.from({ length }, (_, i) => (i * 7919 + 13) % V);
    const samples: Samples[] = runnable.map(() => ({
      prefill: [],
      decode: [],
      ttft: [],
      press: [],
      read: [],
      select: [],
      compact: [],
      prefillMs: [],
      kvBytes: 0,
      peakKvBytes: 0,
      peakDeviceBytes: 0,
    }));
    // One repetition: each policy alone, its device peak read from that very run.
    const alone = plan.repeats === 1;
    for (let r = 0; r < plan.repeats; r++) {
      const run = ({ compiled }: { compiled: Plan }, gate: PhaseGate) =>
        runOnce(engine, compiled, ids, plan.decodeTokens, gate, plan.prefillChunk);
      const runs = [];
      if (alone) {
        for (const p of runnable) runs.push(await run(p, new PhaseGate()));
      } else {
        // All policies at once, taking turns: every prefill, then every decode back to back.
        const gate = new PhaseGate();
        runs.push(...await Promise.all(runnable.map((p) => run(p, gate))));
      }
      for (const [i, { result, press }] of runs.entries()) {
        const { timing, kv } = result;
        const s = samples[i];
        s.prefill.push(timing.prefillTokensPerSecond);
        s.decode.push(timing.decodeTokensPerSecond);
        s.ttft.push(timing.ttftMs);
        s.prefillMs.push(timing.prefillMs);
        s.press.push(timing.pressMs);
        s.read.push(press.readMs);
        s.select.push(press.selectMs);
        s.compact.push(Math.max(0, timing.pressMs - press.readMs - press.selectMs));
        s.kvBytes = kv.keptBytes;
        s.peakKvBytes = kv.peakBytes;
        s.peakDeviceBytes = result.deviceMemory.peakBytes;
      }
    }
    // Device memory, one policy at a time: side by side, every policy's buffers are live at once.
    for (const [i, { compiled }] of alone ? [] : runnable.entries()) {
      const { result } = await runOnce(
        engine,
        compiled,
        ids,
        plan.decodeTokens,
        new PhaseGate(),
        plan.prefillChunk,
      );
      samples[i].peakDeviceBytes = result.deviceMemory.peakBytes;
    }
    let full: BenchRow | undefined;
    for (const [i, { policy }] of runnable.entries()) {
      const s = samples[i];
      const row: BenchRow = {
        policy,
        prompt_tokens: length,
        prefill_tok_s: median(s.prefill),
        decode_tok_s: median(s.decode),
        ttft_ms: median(s.ttft),
        kv_bytes: s.kvBytes,
        peak_kv_bytes: s.peakKvBytes,
        peak_device_bytes: s.peakDeviceBytes,
        press_ms: median(s.press),
        press_read_ms: median(s.read),
        press_select_ms: median(s.select),
        press_compact_ms: median(s.compact),
        press_share: median(s.press) / median(s.prefillMs),
        decode_ratio: 1,
        kv_ratio: 1,
        peak_kv_ratio: 1,
        decode_spread: [Math.min(...s.decode), Math.max(...s.decode)],
        repeats: plan.repeats,
      };
      full ??= row;
      row.decode_ratio = row.decode_tok_s / full.decode_tok_s;
      row.kv_ratio = row.kv_bytes / full.kv_bytes;
      row.peak_kv_ratio = row.peak_kv_bytes / full.peak_kv_bytes;
      rows.push(row);
      onRow?.(row);
    }
  }
  return rows;
}
