/** `retrieval`: RazorAttention retrieval-head detector. @module */
import type { ModelConfig } from "../model/types.ts";
import { combineSeeds, seededRandom } from "./prng.ts";
import type { DetectorSchema } from "./schema.ts";

/**
 * RazorAttention (Tang et al., 2024, arXiv 2407.15891): probe the model with BOS + a random block
 * repeated 4 times; a KV head's echo and induction scores are the max over its query heads;
 * retrieval heads = top `induction` fraction by induction ∪ top `echo` fraction by echo.
 * `top=15%` is shorthand for induction = top − echo.
 */
export const retrievalDetector: DetectorSchema = {
  kind: "detector",
  name: "retrieval",
  target: "heads",
  params: [
    {
      name: "induction",
      type: { kind: "fraction" },
      default: 0.14,
      doc: "share of heads kept by induction score",
    },
    { name: "echo", type: { kind: "fraction" }, default: 0.01, doc: "share kept by echo score" },
    {
      name: "top",
      type: { kind: "fraction" },
      default: null,
      doc: "total share (sets induction = top − echo); auto = induction + echo",
    },
  ],
  doc: "RazorAttention: heads with high echo/induction scores on a repeated random probe.",
};

/** The retrieval probe: BOS (when the model has one) + a random block repeated 4 times. */
export interface RetrievalProbe {
  /** Token ids fed to the model. */
  tokens: number[];
  /** Block length B; copy c (0-based) starts at `offset + c·B`. */
  block: number;
  /** Position of the first block token: 1 after BOS, 0 without. */
  offset: number;
  /** The seed used. */
  seed: number;
}

/** Copies of the block in the probe (RazorAttention). */
export const PROBE_COPIES = 4;

/**
 * Builds the probe for a model: block length B = min(2500, ⌊(maxPositions − offset)/4⌋,
 * number of non-special tokens), drawn WITHOUT replacement (so equal tokens are exactly the
 * positions ≡ mod B) from the vocabulary minus BOS/EOS ids, with {@link seededRandom}
 * seeded by `combineSeeds(seed, vocabSize)`. Needs B ≥ 2.
 */
export function retrievalProbe(
  config: Pick<ModelConfig, "vocabSize" | "maxPositions" | "bosTokenId" | "eosTokenIds">,
  seed = 0,
): RetrievalProbe {
  const special = new Set<number>(config.eosTokenIds);
  if (config.bosTokenId !== null) special.add(config.bosTokenId);
  const usable = [];
  for (let id = 0; id < config.vocabSize; id++) if (!special.has(id)) usable.push(id);
  const offset = config.bosTokenId === null ? 0 : 1;
  const block = Math.min(
    2500,
    Math.floor((config.maxPositions - offset) / PROBE_COPIES),
    usable.length,
  );
  if (block < 2) throw new RangeError(`the probe block would be ${block} tokens (needs ≥ 2)`);
  const random = seededRandom(combineSeeds(seed, config.vocabSize));
  for (let i = 0; i < block; i++) {
    const j = i + Math.floor(random() * (usable.length - i));
    [usable[i], usable[j]] = [usable[j], usable[i]];
  }
  const blockTokens = usable.slice(0, block);
  const tokens = config.bosTokenId === null ? [] : [config.bosTokenId];
  for (let c = 0; c < PROBE_COPIES; c++) tokens.push(...blockTokens);
  return { tokens, block, offset, seed };
}

/** Echo and induction scores, one per head. */
export interface HeadScores {
  /** Echo: attention to earlier occurrences of the query's own token. */
  echo: number[];
  /** Induction: attention to the token after an earlier occurrence. */
  induction: number[];
}

/**
 * Per-QUERY-head scores of one layer from its attention on the probe. `attentionRow(head, i)`
 * returns query head `head`'s probabilities at probe position i over positions 0..i. For each
 * query position i in copies 2–4 (i ≥ offset + B), echo_i = Σ attention to i − B, i − 2B, …
 * (≥ offset) and induction_i = Σ attention to those positions + 1; a head's score is the mean
 * over those i.
 */
export function retrievalQueryHeadScores(
  probe: RetrievalProbe,
  numHeads: number,
  attentionRow: (head: number, position: number) => ArrayLike<number>,
): HeadScores {
  const { block, offset, tokens } = probe;
  const echo = [], induction = [];
  for (let head = 0; head < numHeads; head++) {
    let echoSum = 0, inductionSum = 0, count = 0;
    for (let i = offset + block; i < tokens.length; i++) {
      const row = attentionRow(head, i);
      for (let j = i - block; j >= offset; j -= block) {
        echoSum += row[j];
        inductionSum += row[j + 1];
      }
      count++;
    }
    echo.push(echoSum / count);
    induction.push(inductionSum / count);
  }
  return { echo, induction };
}

/** Per-KV-head scores: the max over the `groupSize` query heads of each group. */
export function retrievalKvHeadScores(perQueryHead: HeadScores, groupSize: number): HeadScores {
  const maxOverGroups = (values: number[]) => {
    const out = [];
    for (let start = 0; start < values.length; start += groupSize) {
      out.push(Math.max(...values.slice(start, start + groupSize)));
    }
    return out;
  };
  return {
    echo: maxOverGroups(perQueryHead.echo),
    induction: maxOverGroups(perQueryHead.induction),
  };
}

/** Parameters of {@link selectRetrievalHeads}, named as in the schema (`top: null` = auto). */
export interface RetrievalParams {
  /** Share of heads taken by induction score. */
  induction: number;
  /** Share of heads taken by echo score. */
  echo: number;
  /** Total share; when set, induction = max(0, top − echo). */
  top: number | null;
}

/** Heads a share stands for among `total`: round(share·total), at least 1 when share > 0. */
export function headCount(share: number, total: number): number {
  if (share <= 0) return 0;
  return Math.min(total, Math.max(1, Math.round(share * total + 1e-9)));
}

/**
 * Retrieval heads over the whole model: `scores[layer]` are per-KV-head scores of each layer.
 * Heads are ranked globally (higher first; ties → lower layer, then lower head); the result
 * marks, per layer and KV head, the union of the top {@link headCount}(induction) heads by
 * induction and the top headCount(echo) by echo.
 */
export function selectRetrievalHeads(
  scores: readonly HeadScores[],
  params: RetrievalParams,
): boolean[][] {
  const inductionShare = params.top === null
    ? params.induction
    : Math.max(0, params.top - params.echo);
  const heads: { layer: number; head: number }[] = [];
  scores.forEach((layer, l) => layer.echo.forEach((_, h) => heads.push({ layer: l, head: h })));
  const marked = scores.map((layer) => layer.echo.map(() => false));
  const markTop = (key: "echo" | "induction", share: number) => {
    const ranked = [...heads].sort((a, b) =>
      scores[b.layer][key][b.head] - scores[a.layer][key][a.head] || a.layer - b.layer ||
      a.head - b.head
    );
    for (const { layer, head } of ranked.slice(0, headCount(share, heads.length))) {
      marked[layer][head] = true;
    }
  };
  markTop("induction", inductionShare);
  markTop("echo", params.echo);
  return marked;
}
