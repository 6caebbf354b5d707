/**
 * `deno task bench [--quick] [--json] [--lengths 1k,4k,16k] [--shape small|1b] [--out FILE]`:
 * speed and memory, full vs compressed, side by side, plus kernel throughput against a native
 * BLAS measured in the same run.
 *
 * @module
 */

import { kernelThroughput, type ThroughputRow } from "../../bench/kernelThroughput.ts";
import { randomModel } from "../../bench/randomModel.ts";
import { type BenchRow, runSpeedBench } from "../../bench/speedBench.ts";
import { parseLengths } from "../eval/gridSpec.ts";
import { Engine } from "../runtime/engine.ts";
import { intFlag, parseFlags } from "./args.ts";
import { formatBytes } from "./summary.ts";

/** The policies compared (README's benchmark set). */
export const BENCH_POLICIES = [
  "else -> full",
  "else -> window(sink=4, recent=1020)",
  "else -> snap(k=1024)",
  "else -> snap(k=1024) + quant(bits=4)",
];

function table(rows: BenchRow[]): string {
  const head =
    "| policy | prompt | prefill tok/s | decode tok/s (min–max) | TTFT ms | KV | press ms (share of prefill) | decode × full | KV × full |";
  const lines = [head, "|---|---|---|---|---|---|---|---|---|"];
  for (const r of rows) {
    lines.push(
      `| \`${r.policy.replace(/^else -> /, "")}\` | ${r.prompt_tokens} | ${
        r.prefill_tok_s.toFixed(0)
      } | ${r.decode_tok_s.toFixed(1)} (${r.decode_spread[0].toFixed(1)}–${
        r.decode_spread[1].toFixed(1)
      }) | ${r.ttft_ms.toFixed(0)} | ${formatBytes(r.kv_bytes)} | ${r.press_ms.toFixed(0)} (${
        (100 * r.press_share).toFixed(1)
      }%) | ${r.decode_ratio.toFixed(2)} | ${r.kv_ratio.toFixed(3)} |`,
    );
  }
  return lines.join("\n");
}

function throughputTable(rows: ThroughputRow[]): string {
  const lines = ["| kernel | ours | native BLAS (numpy) | ours / native |", "|---|---|---|---|"];
  for (const r of rows) {
    const native = r.native === null ? "n/a" : `${r.native.toFixed(1)} ${r.unit}`;
    const ratio = r.native === null ? "n/a" : `${((100 * r.ours) / r.native).toFixed(1)}%`;
    lines.push(`| ${r.kernel} | ${r.ours.toFixed(1)} ${r.unit} | ${native} | ${ratio} |`);
  }
  return lines.join("\n");
}

/** Runs `bench`; returns the exit code. */
export async function benchCommand(args: string[]): Promise<number> {
  const { values: v } = parseFlags("bench", args, {
    quick: { type: "boolean" },
    json: { type: "boolean" },
    lengths: { type: "string" },
    shape: { type: "string" },
    repeats: { type: "string" },
    "decode-tokens": { type: "string" },
    out: { type: "string" },
  });
  const quick = v.quick === true;
  const lengths = parseLengths(
    (v.lengths as string | undefined) ?? (quick ? "1k,2k" : "1k,4k,16k"),
  );
  const shape = (v.shape as string | undefined) ?? "small";
  const repeats = intFlag("repeats", v.repeats, quick ? 2 : 3, 1);
  const decodeTokens = intFlag("decode-tokens", v["decode-tokens"], quick ? 16 : 32, 2);
  const maxLen = Math.max(...lengths) + decodeTokens;
  const log = (s: string) => v.json ? undefined : console.error(s);
  log(
    `bench: random-weight '${shape}' model, prompts ${lengths.join(", ")}, ${repeats} repetitions`,
  );
  const engine = await Engine.fromWeights(randomModel(shape, maxLen), null);
  try {
    const rows = await runSpeedBench(engine, {
      lengths,
      policies: BENCH_POLICIES,
      decodeTokens,
      repeats,
    }, (r) => log(`  ${r.policy} @${r.prompt_tokens}: decode ${r.decode_tok_s.toFixed(1)} tok/s`));
    const throughput = await kernelThroughput(engine.ctx);
    const device = engine.ctx.adapterDescription;
    if (v.json) {
      console.log(JSON.stringify({ device, shape, rows, throughput }, null, 2));
    } else {
      const skipped = BENCH_POLICIES.filter((p) => !rows.some((r) => r.policy === p));
      const text = [
        `Device: ${device}. Model: random-weight bf16 '${shape}' Llama config (not trained; speed only).`,
        `Decode: ${decodeTokens} tokens per run; medians of ${repeats} runs; one process, side by side.`,
        skipped.length ? `Not executable by the runtime yet, left out: ${skipped.join("; ")}.` : "",
        "",
        table(rows),
        "",
        throughputTable(throughput),
      ].filter((l, i, a) => l !== "" || a[i - 1] !== "").join("\n");
      console.log(text);
      if (typeof v.out === "string") Deno.writeTextFileSync(v.out, text + "\n");
    }
    return 0;
  } finally {
    engine.close();
  }
}
