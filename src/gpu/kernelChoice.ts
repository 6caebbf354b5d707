/**
 * Which kernel runs an op that has more than one implementation: the kernels tuned on llvmpipe
 * (CPU adapters) and their GPU counterparts, plus GPU candidates that wait for a GPU measurement
 * before they become defaults. Chosen per device by adapter kind; `KVPOLICY_KERNELS` (e.g.
 * `prefill=workgroup,gemm=tiled`) overrides single choices, so the end-to-end benchmark can compare
 * them (see `bench/NOTES.md`, section 4).
 *
 * @module
 */

import { UserError } from "../userError.ts";

/** The kernel of each op with alternatives. */
export interface KernelChoice {
  /**
   * Prefill attention: `flash` (register-blocked, `flashPrefillAttention.ts`; CPU adapters),
   * `thread` (a thread per query × head, `prefillAttention.ts`; GPUs) or `workgroup` (K/V tiles in
   * workgroup memory, `workgroupPrefillAttention.ts`; GPU candidate).
   */
  prefill: "flash" | "thread" | "workgroup";
  /**
   * Prefill GEMM: `register` tiles (`matmul.ts`), or workgroup-memory tiles (`tiledGemm.ts`; GPU
   * candidates): `tiled` (64×64 blocks, 4×4 per thread) or `tiled128` (128×128, 8×8).
   */
  gemm: "register" | "tiled" | "tiled128";
  /** Decode attention's split pass: `thread` per split (CPU adapters) or `workgroup` (GPUs). */
  decode: "thread" | "workgroup";
  /**
   * How f16 weights and f16 KV caches are read: `packed` (u32 pairs unpacked with
   * `unpack2x16float`, core WGSL) or `native` (`array<vec4<f16>>` under `enable f16`; adapters
   * with `shader-f16`). Arithmetic stays f32 either way.
   */
  f16: "packed" | "native";
  /**
   * Decode GEMV body: `rows` (each thread owns 8 rows, x loaded once for all; CPU adapters) or
   * `reduce` (16 threads per row striding over K, a workgroup tree reduction; GPUs).
   */
  gemv: "rows" | "reduce";
  /**
   * Decode dispatches: `fused` runs RMSNorm + q/k/v, RMSNorm + gate/up and SwiGLU + down as one
   * GEMV dispatch each (`fusedGemv.ts`, 7 dispatches per layer instead of 13); `separate` keeps
   * one dispatch per step.
   */
  fusion: "fused" | "separate";
  /**
   * Prefill GEMM arithmetic: `f32`, or `f16` (adapters with `shader-f16`): both operands rounded
   * to f16, products and short partial sums in f16 (4 elements of K in the register GEMM, one K
   * slice of 16 or 8 in the tiled GEMMs), each partial promoted into an f32 accumulator. Decode
   * GEMVs and attention stay f32: they are bandwidth-bound, so f16 arithmetic saves them nothing.
   */
  math: "f32" | "f16";
}

const OPTIONS: { [K in keyof KernelChoice]: readonly KernelChoice[K][] } = {
  prefill: ["flash", "thread", "workgroup"],
  gemm: ["register", "tiled", "tiled128"],
  decode: ["thread", "workgroup"],
  f16: ["packed", "native"],
  gemv: ["rows", "reduce"],
  fusion: ["fused", "separate"],
  math: ["f32", "f16"],
};

/**
 * The defaults: llvmpipe's kernels on CPU adapters, the GPU variants elsewhere. All measured,
 * except GPUs' `fusion: "fused"` — chosen because a decode step there is mostly fixed cost per
 * dispatch (H100: ≈ 9 µs for each of a 'small-mha' step's ≈ 110 dispatches, bench/NOTES.md
 * section 4), and the fused GEMV keeps the measured GEMV's reduction shape. `math: "f32"`
 * everywhere: f16 arithmetic is slower on llvmpipe (bench/NOTES.md) and unmeasured on GPUs.
 */
export function defaultKernels(isFallbackAdapter: boolean): KernelChoice {
  return isFallbackAdapter
    ? {
      prefill: "flash",
      gemm: "register",
      decode: "thread",
      f16: "packed",
      gemv: "rows",
      fusion: "fused",
      math: "f32",
    }
    : {
      prefill: "thread",
      gemm: "register",
      decode: "workgroup",
      f16: "packed",
      gemv: "reduce",
      fusion: "fused",
      math: "f32",
    };
}

/**
 * Parses `op=kernel` pairs (comma-separated, e.g. `prefill=workgroup,gemm=tiled`); ops not named
 * keep the adapter's default. Throws a {@link UserError} naming the variable and the accepted
 * values on anything else.
 */
export function parseKernelChoice(text: string): Partial<KernelChoice> {
  const out: Partial<KernelChoice> = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [op, value, ...rest] = part.split("=").map((s) => s.trim());
    const accepted = Object.entries(OPTIONS).map(([k, vs]) => `${k}=${vs.join("|")}`).join(", ");
    if (!(op in OPTIONS) || rest.length || !value) {
      throw new UserError(`KVPOLICY_KERNELS: '${part}' is not op=kernel (${accepted})`);
    }
    const key = op as keyof KernelChoice;
    if (!(OPTIONS[key] as readonly string[]).includes(value)) {
      throw new UserError(
        `KVPOLICY_KERNELS: unknown ${key} kernel '${value}' (${OPTIONS[key].join(", ")})`,
      );
    }
    (out as Record<string, string>)[key] = value;
  }
  return out;
}
