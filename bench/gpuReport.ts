/**
 * The GPU run's table (`bench/gpu-run.sh`): reads `bench --profile --json`, `bench --json` and
 * `bench/torch_peer.py`'s JSON from one run on one device and prints the markdown section for
 * bench/RESULTS.md, with the targets next to what was measured:
 * - decode of the '1b' shape at 1K as a share of the device's copy bandwidth (bytes of weights and
 *   KV cache read per token × tokens/s, against the copy GB/s the peer measured);
 * - `snap(k=1024)` decode against `full` at 16K and 32K, with the bound that a 1K-context step
 *   sets (snap at k=1024 cannot step faster than the full cache does at 1K);
 * - our decode tokens/s against Hugging Face transformers' on the same shape and prompt.
 *
 * `deno run --allow-read bench/gpuReport.ts PROFILE.json BENCH.json BENCH-LONG.json TORCH.json SHAPE`
 *
 * @module
 */

import { benchWeightBytes } from "./randomModel.ts";
import { type StepCostRow, stepCostTable } from "./stepCost.ts";

interface BenchJson {
  device: string;
  sections: {
    rows: { policy: string; prompt_tokens: number; decode_tok_s: number; kv_bytes: number }[];
  }[];
}

interface TorchJson {
  error?: string;
  device?: string;
  torch?: string;
  transformers?: string;
  attention?: string;
  copy_gb_s?: number;
  rows?: { prompt_tokens: number; decode_tok_s: number }[];
}

const fmt = (x: number | undefined, d = 1) => x === undefined ? "n/a" : x.toFixed(d);

/** The markdown section for one GPU run. */
export function gpuReport(
  profile: { device: string; rows: StepCostRow[] },
  bench: BenchJson,
  torch: TorchJson,
  shape = "1b",
  date = new Date().toISOString().slice(0, 10),
): string {
  const rows = bench.sections.flatMap((s) => s.rows);
  const at = (policy: RegExp, n: number) =>
    rows.find((r) => policy.test(r.policy) && r.prompt_tokens === n);
  const torchAt = (n: number) => torch.rows?.find((r) => r.prompt_tokens === n)?.decode_tok_s;
  const lengths = [...new Set(rows.map((r) => r.prompt_tokens))].sort((a, b) => a - b);
  const lines = [
    `## GPU run ${date}: ${bench.device}, '${shape}' shape (bf16, random weights)`,
    "",
    "Made by `bench/gpu-run.sh` (one run; ratios within it).",
    "",
    `| prompt | full tok/s | window tok/s | snap(k=1024) tok/s | snap × full | bound (full@${
      lengths[0]
    } ÷ full@N) | transformers tok/s | ours (full) ÷ transformers |`,
    "|---|---|---|---|---|---|---|---|",
  ];
  const full1k = at(/full/, lengths[0]);
  for (const n of lengths) {
    const full = at(/full/, n), window = at(/window/, n), snap = at(/snap/, n);
    const peer = torchAt(n);
    lines.push(
      `| ${n} | ${fmt(full?.decode_tok_s)} | ${fmt(window?.decode_tok_s)} | ${
        fmt(snap?.decode_tok_s)
      } | ${full && snap ? fmt(snap.decode_tok_s / full.decode_tok_s, 2) : "n/a"} | ${
        full && full1k ? fmt(full1k.decode_tok_s / full.decode_tok_s, 2) : "n/a"
      } | ${fmt(peer)} | ${full && peer ? fmt(full.decode_tok_s / peer, 2) : "n/a"} |`,
    );
  }
  const weights = benchWeightBytes(shape);
  lines.push("");
  if (full1k && torch.copy_gb_s) {
    const perToken = weights + full1k.kv_bytes;
    const gbs = perToken * full1k.decode_tok_s / 1e9;
    lines.push(
      `Bandwidth at ${full1k.prompt_tokens} tokens: ${(perToken / 1e9).toFixed(2)} GB read per ` +
        `token × ${fmt(full1k.decode_tok_s)} tok/s = ${fmt(gbs)} GB/s, ` +
        `${fmt(100 * gbs / torch.copy_gb_s, 0)}% of the ${fmt(torch.copy_gb_s, 0)} GB/s copy ` +
        "bandwidth the peer measured (target ≥ 50%).",
    );
  } else {lines.push(
      "Bandwidth: not computed (no full-cache row at the shortest prompt, or no copy rate).",
    );}
  lines.push(
    "",
    torch.error
      ? `PyTorch peer: ${torch.error}.`
      : `PyTorch peer: ${torch.device}, torch ${torch.torch}, transformers ${torch.transformers}, ` +
        `attention ${torch.attention}, no CUDA graphs, no torch.compile (bench/torch_peer.py).`,
    "",
    `Decode step cost (${profile.device}):`,
    "",
    stepCostTable(profile.rows),
  );
  return lines.join("\n");
}

if (import.meta.main) {
  // PROFILE.json BENCH.json BENCH-LONG.json TORCH.json SHAPE: a missing or cut file (a timeout)
  // leaves its rows out and says so.
  const [p, b, long, t, shape = "1b"] = Deno.args;
  const read = <T>(f: string, fallback: T): T => {
    try {
      return JSON.parse(Deno.readTextFileSync(f));
    } catch (e) {
      console.error(`gpuReport: ${f}: ${(e as Error).message}`);
      return fallback;
    }
  };
  const empty: BenchJson = { device: "unknown", sections: [] };
  const bench = read(b, empty), benchLong = read(long, empty);
  const merged = { device: bench.device, sections: [...bench.sections, ...benchLong.sections] };
  const torch = read<TorchJson>(t, { error: "no peer output" });
  console.log(gpuReport(read(p, { device: "unknown", rows: [] }), merged, torch, shape));
}
