/**
 * `deno task bench [--quick] [--json] [--lengths 1k,4k,16k] [--shape small,small-mha]
 * [--repeats N] [--long-repeats N] [--decode-tokens N] [--prefill-chunk N] [--model DIR]
 * [--policy P ...] [--out FILE] [--profile]`: speed and memory (KV bytes kept, the peaks of the KV
 * cache and of the device's buffers), full vs compressed, side by side, plus kernel throughput
 * against a native BLAS measured in the same run. `--quick`: the 'small' shape at 1K tokens, one
 * run per policy (each alone; see `bench/speedBench.ts`), 32 tokens decoded. Prompts of
 * {@link LONG_PROMPT} tokens or more run `--long-repeats` times (default 1: a 16K prefill takes
 * minutes on a CPU adapter). With `--model DIR`, a real checkpoint is measured too
 * (at the lengths that fit its context), after the random-weight shapes. `--profile` measures the
 * cost of one decode step instead (dispatches, CPU encode time, GPU time, wall time; see
 * `bench/stepCost.ts`).
 *
 * @module
 */

import { compileProgress } from "./compileProgress.ts";
import { kernelThroughput, type ThroughputRow } from "../../bench/kernelThroughput.ts";
import { BENCH_SHAPES, randomModel } from "../../bench/randomModel.ts";
import { type BenchRow, runSpeedBench } from "../../bench/speedBench.ts";
import { runStepCostProfile, stepCostTable } from "../../bench/stepCost.ts";
import { parseLengths } from "../eval/gridSpec.ts";
import { Engine } from "../runtime/engine.ts";
import { locateModel, readModelHeader } from "../model/openModel.ts";
import type { ModelConfig } from "../model/types.ts";
import { intFlag, optionalIntFlag, parseFlags } from "./args.ts";
import { UserError } from "./errors.ts";
import { prepareOutputFile, writeOutput } from "./outputs.ts";
import { formatBytes } from "./summary.ts";
import { readPolicySource } from "./policySource.ts";
import { compileOrThrow } from "../plan/compile.ts";
import { checkExecutable } from "../runtime/executable.ts";

/** Prompt length from which `--long-repeats` applies. */
export const LONG_PROMPT = 8192;

/**
 * The policies compared by default (README's benchmark set; `--policy` replaces it): the full
 * cache first (the ratios' reference), then a window, SnapKV, SnapKV over a 4-bit cache, and
 * SnapKV compressing between 2K-token prefill chunks (bounded peak memory; `chunked`).
 */
export const BENCH_POLICIES = [
  "else -> full",
  "else -> window(sink=4, recent=1020)",
  "else -> snap(k=1024)",
  "else -> snap(k=1024) + quant(bits=4)",
  "else -> snap(k=1024) + chunked(size=2k)",
];

interface Section {
  model: string;
  rows: BenchRow[];
  skipped?: number[];
  /** A checkpoint's load: reading and dequantizing (ms) and the weight bytes on the GPU. */
  load?: { ms: number; weight_bytes: number };
}

function table(rows: BenchRow[]): string {
  const head =
    "| policy | prompt | runs | prefill tok/s | decode tok/s (min–max) | TTFT ms | KV | peak KV | peak device | press ms (share of prefill) | read + select + compact ms | decode × full | KV × full | peak KV × full |";
  const lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"];
  for (const r of rows) {
    lines.push(
      `| \`${r.policy.replace(/^else -> /, "")}\` | ${r.prompt_tokens} | ${r.repeats} | ${
        r.prefill_tok_s.toFixed(0)
      } | ${r.decode_tok_s.toFixed(1)} (${r.decode_spread[0].toFixed(1)}–${
        r.decode_spread[1].toFixed(1)
      }) | ${r.ttft_ms.toFixed(0)} | ${formatBytes(r.kv_bytes)} | ${
        formatBytes(r.peak_kv_bytes)
      } | ${formatBytes(r.peak_device_bytes)} | ${r.press_ms.toFixed(0)} (${
        (100 * r.press_share).toFixed(1)
      }%) | ${r.press_read_ms.toFixed(0)} + ${r.press_select_ms.toFixed(0)} + ${
        r.press_compact_ms.toFixed(0)
      } | ${r.decode_ratio.toFixed(2)} | ${r.kv_ratio.toFixed(3)} | ${
        r.peak_kv_ratio.toFixed(3)
      } |`,
    );
  }
  return lines.join("\n");
}

function throughputTable(rows: ThroughputRow[]): string {
  const lines = [
    "| kernel | ours | native reference | native | ours / native |",
    "|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const native = r.native === null ? "n/a" : `${r.native.toFixed(1)} ${r.unit}`;
    const ratio = r.native === null ? "n/a" : `${((100 * r.ours) / r.native).toFixed(1)}%`;
    lines.push(
      `| ${r.kernel} | ${r.ours.toFixed(1)} ${r.unit} | ${r.reference} | ${native} | ${ratio} |`,
    );
  }
  return lines.join("\n");
}

/**
 * The policies to compare: `--policy` arguments (files, shipped names or inline text, as for
 * `eval`), each checked now and refused with its file:line:col if it does not compile or the
 * runtime cannot execute it; else {@link BENCH_POLICIES}.
 */
export function benchPolicies(args: string[]): { policies: string[]; labels: string[] } {
  if (args.length === 0) return { policies: [...BENCH_POLICIES], labels: [...BENCH_POLICIES] };
  const policies: string[] = [], labels: string[] = [];
  for (const arg of args) {
    const source = readPolicySource(arg);
    const plan = compileOrThrow(source.text, source.file);
    if (plan.uses.length) {
      throw new UserError(`${source.file}: bench does not load plugin code ('use')`);
    }
    try {
      checkExecutable(plan);
    } catch (e) {
      throw new UserError(`${source.file}: ${(e as Error).message}`);
    }
    policies.push(source.text);
    labels.push(source.inline ? source.text : source.file);
  }
  return { policies, labels };
}

/** `hidden 512, 8 layers, 8 query / 2 KV heads of 64, vocab 4096`. */
export function describeShape(c: ModelConfig): string {
  return `hidden ${c.hiddenSize}, ${c.numLayers} layers, ${c.numHeads} query / ${c.numKvHeads} ` +
    `KV heads of ${c.headDim}, MLP ${c.intermediateSize}, vocab ${c.vocabSize}`;
}

/** How `runSpeedBench` runs the policies with `repeats` repetitions. */
function runMode(repeats: number): string {
  return repeats > 1
    ? "Side by side: in each run every policy prefills, then every policy decodes, back to back"
    : "One run: each policy alone, one after the other";
}

/** Runs `bench`; returns the exit code. */
export async function benchCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags("bench", args, {
    quick: { type: "boolean" },
    json: { type: "boolean" },
    lengths: { type: "string" },
    shape: { type: "string" },
    repeats: { type: "string" },
    "long-repeats": { type: "string" },
    "decode-tokens": { type: "string" },
    "prefill-chunk": { type: "string" },
    out: { type: "string" },
    model: { type: "string" },
    policy: { type: "string", multiple: true },
    profile: { type: "boolean" },
  });
  if (typeof v.out === "string") prepareOutputFile("bench", v.out, "bench");
  const policies = benchPolicies((v.policy as string[] | undefined) ?? []);
  const quick = v.quick === true;
  const lengths = parseLengths(
    (v.lengths as string | undefined) ?? (quick ? "1k" : "1k,4k,16k"),
  );
  const shapes = ((v.shape as string | undefined) ?? (quick ? "small" : "small,small-mha"))
    .split(",").map((s) => s.trim());
  for (const s of shapes) {
    if (!(s in BENCH_SHAPES)) {
      throw new UserError(
        `bench: unknown --shape '${s}' (one or more of ${Object.keys(BENCH_SHAPES).join(", ")})`,
      );
    }
  }
  // --quick: one run per policy, each alone (its device peak from the same run)
  const repeats = intFlag("repeats", v.repeats, quick ? 1 : 3, 1);
  const longRepeats = intFlag("long-repeats", v["long-repeats"], 1, 1);
  const decodeTokens = intFlag("decode-tokens", v["decode-tokens"], quick ? 32 : 64, 2);
  const maxLen = Math.max(...lengths) + decodeTokens;
  const log = (s: string) => v.json ? undefined : console.error(s);
  log(
    `bench: random-weight ${shapes.join(", ")}; prompts ${lengths.join(", ")}; ${repeats} runs ` +
      `(${longRepeats} from ${LONG_PROMPT} tokens)`,
  );
  const prefillChunk = optionalIntFlag("prefill-chunk", v["prefill-chunk"], 1);
  if (v.profile) {
    // A chunked prefill decodes like its press; the profile measures decode steps.
    const stepPolicies = policies.policies.filter((p) => !/\bchunked\b/.test(p));
    const onCompile = compileProgress();
    const { device, rows } = await runStepCostProfile(
      (shape) => Engine.fromWeights(randomModel(shape, maxLen + 64), null, { onCompile }),
      { shapes, lengths, policies: stepPolicies },
      (r) => log(`  ${r.shape} ${r.policy} @${r.prompt_tokens}: ${r.wall_ms.toFixed(2)} ms/step`),
    );
    if (v.json) console.log(JSON.stringify({ device, rows }, null, 2));
    else {
      console.log(`# Decode step cost\n\nDevice: ${device}\n\n${stepCostTable(rows)}`);
    }
    return 0;
  }
  // A bad --model fails now, not after the random-weight shapes have been measured.
  if (typeof v.model === "string") await readModelHeader(await locateModel(v.model));
  const plan = { ...policies, decodeTokens, prefillChunk };
  const progress = (r: BenchRow) =>
    log(`  ${r.policy} @${r.prompt_tokens}: decode ${r.decode_tok_s.toFixed(1)} tok/s`);
  /** Short prompts `repeats` times, long ones `longRepeats` times. */
  const measure = async (engine: Engine, lens: number[]) => [
    ...await runSpeedBench(
      engine,
      { ...plan, repeats, lengths: lens.filter((n) => n < LONG_PROMPT) },
      progress,
    ),
    ...await runSpeedBench(
      engine,
      { ...plan, repeats: longRepeats, lengths: lens.filter((n) => n >= LONG_PROMPT) },
      progress,
    ),
  ];
  const sections: Section[] = [];
  let throughput: ThroughputRow[] = [];
  let device = "";
  let chunk = 0;
  let kernels = "";
  const onCompile = compileProgress();
  for (const shape of shapes) {
    const engine = await Engine.fromWeights(randomModel(shape, maxLen), null, { onCompile });
    try {
      device = engine.ctx.adapterDescription;
      chunk = prefillChunk ?? engine.prefillChunk;
      kernels = Object.entries(engine.ctx.kernels).map(([op, k]) => `${op}=${k}`).join(",");
      const rows = await measure(engine, lengths);
      sections.push({
        model: `random-weight bf16 '${shape}' Llama config (${
          describeShape(engine.config)
        }; not trained, speed only)`,
        rows,
      });
      if (!throughput.length) throughput = await kernelThroughput(engine.ctx);
    } finally {
      engine.close();
    }
  }
  if (typeof v.model === "string") {
    const engine = await Engine.open(v.model, { onCompile });
    try {
      const fit = lengths.filter((n) => n + decodeTokens <= engine.config.maxPositions);
      const skipped = lengths.filter((n) => !fit.includes(n));
      log(`bench: ${v.model}${skipped.length ? ` (too long for its context: ${skipped})` : ""}`);
      const rows = await measure(engine, fit);
      const load = { ms: engine.loadMs ?? 0, weight_bytes: engine.gpu.bytes };
      sections.push({
        model: `${v.model} (${engine.config.numLayers} layers; read in ${
          (load.ms / 1000).toFixed(1)
        } s, ${formatBytes(load.weight_bytes)} of weights on the GPU)`,
        rows,
        skipped,
        load,
      });
    } finally {
      engine.close();
    }
  }
  if (v.json) {
    console.log(
      JSON.stringify(
        { device, kernels, prefill_chunk: chunk, shapes, sections, throughput },
        null,
        2,
      ),
    );
    return 0;
  }
  const skippedPolicies = policies.labels.filter((p) =>
    !sections.some((sec) => sec.rows.some((r) => r.policy === p))
  );
  const text = [
    `# Benchmark results`,
    "",
    `Generated by \`deno task bench ${args.join(" ")}\` on ${
      new Date().toISOString().slice(0, 10)
    }.`,
    `Device: ${device}; kernels ${kernels} (\`KVPOLICY_KERNELS\`). Prefill in chunks of ${chunk} tokens. Decode: ${decodeTokens} tokens per run; medians over the runs (${repeats}, ` +
    `${longRepeats} from ${LONG_PROMPT} tokens); one process. ${runMode(repeats)}${
      lengths.some((n) => n >= LONG_PROMPT)
        ? `; from ${LONG_PROMPT} tokens: ${runMode(longRepeats).toLowerCase()}`
        : ""
    }. Prefill includes the ` +
    "press (scoring, selection, compaction); decode tok/s counts the tokens after it. The press splits " +
    "into reading scores back from the GPU, CPU work (detectors, scoring, top-k) and the rest " +
    "(compaction / quantisation on the GPU, with the final sync); medians of each, so they need " +
    "not add up to the press median exactly. Peak KV: the most K/V bytes allocated at once during " +
    "a run (a compaction's new layer included); peak device: the most bytes live at once in all " +
    "the device's buffers (weights, activations, cache, scratch, readback staging), measured in " +
    "a run of each policy alone (after runs side by side, one more: there their buffers coexist).",
    skippedPolicies.length
      ? `Not executable by the runtime yet, left out: ${skippedPolicies.join("; ")}.`
      : "",
    ...sections.flatMap((sec) => [
      "",
      `## ${sec.model}`,
      "",
      sec.skipped?.length
        ? `Lengths beyond its context, left out: ${sec.skipped.join(", ")}.\n`
        : "",
      table(sec.rows),
    ]),
    "",
    "## Kernel throughput",
    "",
    throughputTable(throughput),
    "",
    "Analysis (profiles, optimisations with before/after, what limits each target): " +
    "[NOTES.md](NOTES.md).",
  ].filter((l, i, a) => l !== "" || a[i - 1] !== "").join("\n");
  console.log(text);
  if (typeof v.out === "string") writeOutput("bench", v.out, text + "\n");
  return 0;
}
