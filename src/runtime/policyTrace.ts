/**
 * What a policy did, per layer and KV head: the rule and pipeline that took each head, the
 * positions it kept after prefill, and the detectors' scores (`run --trace`, `inspect`, `eval`).
 *
 * @module
 */

/** What a policy did to one KV head. */
export interface HeadTrace {
  /** Index of the rule that took it (`null`: none, full cache). */
  rule: number | null;
  /** The pipeline, e.g. `snap(k=64)`. */
  pipeline: string;
  /** Sorted original positions kept after prefill. */
  kept: number[];
  /**
   * RazorAttention induction score (the ranking score of `retrieval`: the share of the probe's
   * attention on the token after an earlier occurrence), when the retrieval detector ran.
   */
  retrieval_score?: number;
  /** RazorAttention echo score (attention on earlier occurrences), when `retrieval` ran. */
  echo_score?: number;
  /** DuoAttention's on-the-fly score (`duo`; the lowest become streaming heads), when it ran. */
  duo_score?: number;
  /** `compensate`: entries collapsed into the head's compensation token (an extra cache row). */
  compensated?: number;
}

/** What a policy did to one layer. */
export interface LayerTrace {
  /** SimLayerKV score, when the lazy detector ran. */
  lazy_score?: number;
  /** Whether the layer was found lazy. */
  lazy?: boolean;
  /** Per KV head. */
  heads: HeadTrace[];
}
