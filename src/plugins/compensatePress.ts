/** `compensate`: RazorAttention's compensation token. @module */
import type { PressSchema } from "./schema.ts";

/**
 * RazorAttention (Tang et al., 2024, arXiv 2407.15891): the entries a `select` press dropped are
 * collapsed into one compensation token (mean key, mean value) placed between sink and window.
 * `weight=count` (default) adds ln(N_d) to its logit, the paper's formulation, so it stands for
 * the N_d tokens it replaces; `weight=plain` is Huawei's deployed plain mean.
 *
 * While decoding, a bounded select press (`window`) keeps evicting its oldest entries. With
 * `decode=fold` (default) each evicted entry joins the token (running mean over every entry
 * dropped so far, N_d and the ln N_d bias growing), so the token always stands for everything
 * between sink and window, as the paper defines it for the whole cache; `decode=fixed` keeps the
 * token built at prefill, and evicted entries are lost. The paper describes the token at
 * compression time only and does not spell out decoding: `fold` is our reading of its definition.
 */
export const compensatePress: PressSchema = {
  kind: "press",
  name: "compensate",
  role: "augment",
  when: "prefill",
  params: [
    {
      name: "weight",
      type: { kind: "enum", values: ["count", "plain"] },
      default: "count",
      doc: "count: logit bias ln(N_d) as in the paper; plain: unweighted mean",
    },
    {
      name: "decode",
      type: { kind: "enum", values: ["fold", "fixed"] },
      default: "fold",
      doc: "fold: entries a bounded window evicts while decoding join the token; fixed: they " +
        "are lost",
    },
  ],
  doc: "RazorAttention compensation token: mean of the dropped keys and values.",
};

/** The compensation token of one KV head. */
export interface CompensationToken {
  /** k̂: mean of the dropped (post-RoPE) keys, `headDim` values. */
  key: Float32Array;
  /** v̂: mean of the dropped values, `headDim` values. */
  value: Float32Array;
  /** Added to this entry's attention logit (after the 1/√d scaling): ln N_d or 0. */
  logBias: number;
  /** N_d: how many entries it replaces. */
  count: number;
}

/**
 * RazorAttention's compensation token for one KV head: given its full `keys` and `values`
 * (`N × headDim`, row-major) and the `kept` positions chosen by the select press (any order),
 * returns the mean key and value of the dropped positions (summed in float64) with
 * `logBias = ln N_d` for `weight=count` (the entry then weighs as much as the N_d tokens with
 * that mean logit) or 0 for `weight=plain`. Returns `null` when nothing was dropped (no token
 * is added). The runtime stores it as one extra cache entry; its position is irrelevant because
 * keys are already rotated.
 */
export function compensationToken(
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
  headDim: number,
  kept: readonly number[],
  weight: "count" | "plain",
): CompensationToken | null {
  const n = keys.length / headDim;
  if (values.length !== keys.length) throw new RangeError("keys and values differ in size");
  const isKept = new Uint8Array(n);
  for (const position of kept) {
    if (!Number.isInteger(position) || position < 0 || position >= n) {
      throw new RangeError(`kept position ${position} is outside [0, ${n})`);
    }
    isKept[position] = 1;
  }
  const keySum = new Float64Array(headDim);
  const valueSum = new Float64Array(headDim);
  let count = 0;
  for (let t = 0; t < n; t++) {
    if (isKept[t]) continue;
    count++;
    for (let d = 0; d < headDim; d++) {
      keySum[d] += keys[t * headDim + d];
      valueSum[d] += values[t * headDim + d];
    }
  }
  if (count === 0) return null;
  return {
    key: Float32Array.from(keySum, (x) => x / count),
    value: Float32Array.from(valueSum, (x) => x / count),
    logBias: weight === "count" ? Math.log(count) : 0,
    count,
  };
}
