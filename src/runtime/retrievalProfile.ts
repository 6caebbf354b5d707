/**
 * RazorAttention retrieval-head scores on the real runtime, cached per model.
 *
 * {@link retrievalScores} runs the probe (BOS + a random block repeated 4 times,
 * `retrievalProbe` of src/plugins/retrievalDetector.ts) through the engine's forward pass in
 * chunks on a fresh f32 cache; after each layer's attention the `probeScores` kernel accumulates
 * every query head's echo and induction attention; the per-KV-head score is the max over its
 * group. {@link retrievalProfile} caches those SCORES (not a verdict: any `retrieval(...)`
 * parameters select from them) as YAML in a cache folder of ours,
 * `<cache>/kvpolicy-retrieval-<hash>.yaml` (`<cache>`: `$KVPOLICY_CACHE_DIR`, else `.cache/` in
 * the checkout), written atomically and never through a link. A model folder is read-only input:
 * a profile shipped beside the model (`<model>/kvpolicy-retrieval.yaml`, for a GGUF file
 * `<file>.kvpolicy-retrieval.yaml`) is read, never written. A profile is reused when its model
 * hash, probe seed and block cap match, and recomputed (and cached) otherwise. When it cannot be
 * cached (no permission, read-only folder) the scores are used anyway and one warning goes to
 * stderr.
 *
 * Deviation from RazorAttention (METHODS.md allows scaling the block): on software adapters
 * (llvmpipe) the block is capped at {@link CPU_BLOCK_CAP} tokens by default, recorded in the
 * profile; the paper's 2500 applies elsewhere.
 *
 * @module
 */

import { parse, stringify } from "yaml";
import { writeFileAtomicSync } from "../atomicWrite.ts";
import { readBoundedFile } from "../model/readBounded.ts";
import { isGgufPath } from "../model/ggufModel.ts";
import type { ModelConfig } from "../model/types.ts";
import { attentionScale } from "../model/attentionScale.ts";
import { tensorToFloat32 } from "../model/dtype.ts";
import { chatSpecialTokens, renderChat } from "../model/chatTemplate.ts";
import { ModelError } from "../model/errors.ts";
import type { RepeatPrompts } from "../plugins/kvzipPress.ts";
import { layerTensorNames } from "../model/tensorShapes.ts";
import {
  type HeadScores,
  PROBE_COPIES,
  retrievalKvHeadScores,
  type RetrievalProbe,
  retrievalProbe,
} from "../plugins/retrievalDetector.ts";
import { probePartialsBytes, probeScores, sumProbePartials } from "../gpu/kernels/probeScores.ts";
import type { Engine } from "./engine.ts";
import { HASH_OF, hashDescription, modelHash } from "./modelHash.ts";
import type { ModelSources } from "./policyExecutor.ts";
import {
  createActivations,
  destroySteps,
  encodeSteps,
  forwardSteps,
  releaseActivations,
  type Step,
} from "./forwardPass.ts";
import { RaggedKvCache } from "./raggedKvCache.ts";

/** The model hash a profile records (re-exported from `modelHash.ts`). */
export { modelHash };

/** Default block cap on software adapters (a ~2K-token probe instead of ~10K). */
export const CPU_BLOCK_CAP = 512;
/** Probe tokens per prefill chunk. */
const PROBE_CHUNK = 512;
/** Profile file name next to the model. */
export const PROFILE_FILE = "kvpolicy-retrieval.yaml";
/** Format tag written in (and required of) profiles. */
export const PROFILE_FORMAT = "kvpolicy-retrieval/1";

/** Options of {@link retrievalScores}. */
export interface RetrievalScoreOptions {
  /** Probe seed (default 0). */
  seed?: number;
  /** Cap on the block length; `null` = none (RazorAttention's 2500); default {@link defaultBlockCap}. */
  block?: number | null;
}

/** The probe as run. */
export interface ProbeRecord {
  /** Seed. */
  seed: number;
  /** Block length used. */
  block: number;
  /** The cap asked for (`null`: none). */
  blockCap: number | null;
  /** First block position (1 after BOS). */
  offset: number;
  /** Probe length in tokens. */
  length: number;
}

/** Scores of every layer: `layers[l].echo[h]`, `layers[l].induction[h]` per KV head. */
export interface RetrievalScores {
  /** Per layer, per KV head (max over the group's query heads). */
  layers: HeadScores[];
  /** Per layer, per query head. */
  queryHeads: HeadScores[];
  /** The probe. */
  probe: ProbeRecord;
}

/** The block cap used when none is given: {@link CPU_BLOCK_CAP} on software adapters. */
export function defaultBlockCap(engine: Engine): number | null {
  return engine.ctx.isFallbackAdapter ? CPU_BLOCK_CAP : null;
}

/** The probe for `config` with the block capped at `cap` (`null`: RazorAttention's sizes). */
export function cappedProbe(config: ModelConfig, seed: number, cap: number | null): RetrievalProbe {
  const offset = config.bosTokenId === null ? 0 : 1;
  const maxPositions = cap === null
    ? config.maxPositions
    : Math.min(config.maxPositions, offset + PROBE_COPIES * cap);
  return retrievalProbe({ ...config, maxPositions }, seed);
}

/** Runs the probe through `engine` and returns every head's echo and induction score. */
export async function retrievalScores(
  engine: Engine,
  opts: RetrievalScoreOptions = {},
): Promise<RetrievalScores> {
  const { ctx, config: c } = engine;
  const seed = opts.seed ?? 0;
  const blockCap = opts.block === undefined ? defaultBlockCap(engine) : opts.block;
  const probe = cappedProbe(c, seed, blockCap);
  const ids = probe.tokens, N = ids.length, H = c.numHeads;
  const cache = new RaggedKvCache(ctx, c, N, "f32");
  const partials = cache.layers.map((_, l) =>
    ctx.createBuffer(probePartialsBytes(N, H), undefined, `probe partials ${l}`)
  );
  const rows = Math.min(PROBE_CHUNK, N);
  const acts = createActivations(ctx, engine.gpu, rows, 1);
  const prepared = new Map<number, Step[]>();
  try {
    for (let start = 0; start < N; start += rows) {
      const m = Math.min(rows, N - start);
      ctx.write(acts.ids, 0, Uint32Array.from(ids.slice(start, start + m)));
      ctx.write(acts.positions, 0, Uint32Array.from({ length: m }, (_, j) => start + j));
      let steps = prepared.get(m);
      if (!steps) {
        steps = forwardSteps(ctx, engine.gpu, cache.layers, acts, {
          m,
          mode: "prefill",
          logits: "last",
          source: { ids: acts.ids, idsOffset: 0, positions: acts.positions, positionsOffset: 0 },
          afterAttention: (l, layer, a) =>
            probeScores(ctx, {
              cache: layer,
              q: a.q,
              m,
              numHeads: H,
              scale: attentionScale(c),
              block: probe.block,
              offset: probe.offset,
              partials: partials[l],
            }),
        });
        prepared.set(m, steps);
      }
      const encoder = ctx.device.createCommandEncoder();
      encodeSteps(encoder, steps);
      ctx.device.queue.submit([encoder.finish()]);
    }
    const counted = N - probe.offset - probe.block;
    const queryHeads: HeadScores[] = [];
    for (const buffer of partials) {
      const sums = sumProbePartials(await ctx.readF32(buffer), H);
      queryHeads.push({
        echo: sums.echo.map((s) => s / counted),
        induction: sums.induction.map((s) => s / counted),
      });
    }
    ctx.check();
    return {
      layers: queryHeads.map((s) => retrievalKvHeadScores(s, H / c.numKvHeads)),
      queryHeads,
      probe: { seed, block: probe.block, blockCap, offset: probe.offset, length: N },
    };
  } finally {
    for (const steps of prepared.values()) destroySteps(steps);
    releaseActivations(ctx, acts);
    for (const b of partials) ctx.release(b);
    cache.release();
  }
}

/**
 * The profile a model ships with (read, never written: a model folder is input): for a folder
 * `<modelDir>/`{@link PROFILE_FILE}, for a GGUF file `<file>.`{@link PROFILE_FILE} beside it.
 */
export function shippedProfilePath(modelDir: string): string {
  return isGgufPath(modelDir) ? `${modelDir}.${PROFILE_FILE}` : `${modelDir}/${PROFILE_FILE}`;
}

/** The largest profile read: 16 MiB (a 128-layer, 128-head profile is under 2 MiB). */
const PROFILE_FILE_LIMIT = 16 * 1024 * 1024;

/** The project's own cache folder, `.cache/` in the checkout (git-ignored). */
export const PROJECT_CACHE_DIR: string = new URL("../../.cache", import.meta.url).pathname;

/**
 * Where computed profiles are cached: `$KVPOLICY_CACHE_DIR` when set (and readable: the tasks
 * grant it), else {@link PROJECT_CACHE_DIR}.
 */
export function defaultCacheDir(): string {
  // Without --allow-env there is no override (and no permission prompt).
  const env = Deno.permissions.querySync({ name: "env", variable: "KVPOLICY_CACHE_DIR" });
  const set = env.state === "granted" ? Deno.env.get("KVPOLICY_CACHE_DIR") : undefined;
  return set || PROJECT_CACHE_DIR;
}

/**
 * Where the computed profile of the model with hash `hash` is cached:
 * `<cacheDir>/kvpolicy-retrieval-<first 16 hex of hash>.yaml` (default {@link defaultCacheDir}).
 */
export function profilePath(hash: string, cacheDir: string = defaultCacheDir()): string {
  return `${cacheDir}/kvpolicy-retrieval-${hash.slice(0, 16)}.yaml`;
}

/** Options of {@link retrievalProfile}. */
export interface RetrievalProfileOptions extends RetrievalScoreOptions {
  /** Cache folder for computed profiles (default {@link defaultCacheDir}). */
  cacheDir?: string;
  /** `false`: compute without reading or writing a profile. */
  cache?: boolean;
}

/** Scores with where they came from. */
export interface RetrievalProfile extends RetrievalScores {
  /** Model hash ({@link modelHash}). */
  modelHash: string;
  /** True when the probe ran (no matching profile); false when read from `path`. */
  computed: boolean;
  /** The profile file, or null when caching was off. */
  path: string | null;
  /** Whether the profile is on disk now (false: it could not be written). */
  saved: boolean;
}

let warnedUnwritable = false;

/**
 * The retrieval scores of `engine`'s model: read from its profile when the model hash and the
 * probe (seed, block cap) match, else computed with {@link retrievalScores} and written back.
 */
export async function retrievalProfile(
  engine: Engine,
  opts: RetrievalProfileOptions = {},
): Promise<RetrievalProfile> {
  const modelDir = engine.weights.dir;
  const seed = opts.seed ?? 0;
  const blockCap = opts.block === undefined ? defaultBlockCap(engine) : opts.block;
  const hash = await modelHash(modelDir);
  if (opts.cache === false) {
    const scores = await retrievalScores(engine, { seed, block: blockCap });
    return { ...scores, modelHash: hash, computed: true, path: null, saved: false };
  }
  const path = profilePath(hash, opts.cacheDir);
  const matches = (p: Awaited<ReturnType<typeof readProfile>>) =>
    p !== null && p.modelHash === hash && p.probe.seed === seed && p.probe.blockCap === blockCap;
  for (const candidate of [path, shippedProfilePath(modelDir)]) {
    const found = await readProfile(candidate, engine.config);
    if (found && matches(found)) return { ...found, computed: false, path: candidate, saved: true };
  }
  const scores = await retrievalScores(engine, { seed, block: blockCap });
  const profile = { ...scores, modelHash: hash, computed: true, path, saved: false };
  const dir = path.slice(0, path.lastIndexOf("/"));
  let problem = `no write permission for ${dir}`;
  // Query first: writing without the permission would prompt on a terminal.
  if (Deno.permissions.querySync({ name: "write", path: dir }).state === "granted") {
    try {
      Deno.mkdirSync(dir, { recursive: true });
      writeFileAtomicSync(path, formatProfile(profile, hashDescription(modelDir)));
      profile.saved = true;
    } catch (e) {
      problem = (e as Error).message;
    }
  }
  if (!profile.saved && !warnedUnwritable) {
    warnedUnwritable = true;
    console.warn(
      `warning: could not cache the retrieval-head profile at ${path} (${problem}); it is ` +
        "recomputed on every run — allow writing there or set KVPOLICY_CACHE_DIR",
    );
  }
  return profile;
}

/** The YAML text of a profile; `hashOf` says what the hash covers (default: an HF folder's). */
export function formatProfile(
  p: RetrievalScores & { modelHash: string },
  hashOf: string = HASH_OF.hf,
): string {
  const doc = {
    format: PROFILE_FORMAT,
    model_hash: p.modelHash,
    hash_of: hashOf,
    probe: {
      seed: p.probe.seed,
      block: p.probe.block,
      block_cap: p.probe.blockCap,
      offset: p.probe.offset,
      length: p.probe.length,
      copies: PROBE_COPIES,
    },
    layers: p.layers.map((s, l) => ({
      layer: l,
      kv_heads: s.echo.map((echo, h) => ({ echo, induction: s.induction[h] })),
      query_heads: p.queryHeads[l].echo.map((echo, h) => ({
        echo,
        induction: p.queryHeads[l].induction[h],
      })),
    })),
  };
  return "# RazorAttention retrieval-head scores (kvpolicy); recomputed when model_hash changes\n" +
    stringify(doc, { collectionStyle: "block", lineWidth: 0 });
}

/** Reads a profile; null when absent, unreadable, malformed or of another shape. */
export async function readProfile(
  path: string,
  config: ModelConfig,
): Promise<(RetrievalScores & { modelHash: string }) | null> {
  type Entry = { echo: unknown; induction: unknown };
  const num = (v: unknown) => {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error("not a score");
    return v;
  };
  const heads = (list: Entry[], n: number): HeadScores => {
    if (!Array.isArray(list) || list.length !== n) throw new Error("wrong head count");
    return { echo: list.map((x) => num(x.echo)), induction: list.map((x) => num(x.induction)) };
  };
  try {
    const bytes = await readBoundedFile(path, PROFILE_FILE_LIMIT, "a retrieval profile");
    const doc = parse(new TextDecoder().decode(bytes));
    if (doc?.format !== PROFILE_FORMAT || doc.layers?.length !== config.numLayers) return null;
    const { seed, block, block_cap, offset, length } = doc.probe;
    const layers: { kv_heads: Entry[]; query_heads: Entry[] }[] = doc.layers;
    return {
      modelHash: String(doc.model_hash),
      probe: { seed, block, blockCap: block_cap ?? null, offset, length },
      layers: layers.map((l) => heads(l.kv_heads, config.numKvHeads)),
      queryHeads: layers.map((l) => heads(l.query_heads, config.numHeads)),
    };
  } catch (e) {
    // A missing profile is normal; anything else (unreadable, malformed) is worth a warning.
    if (!(e instanceof Deno.errors.NotFound)) {
      console.warn(`warning: ignoring the retrieval profile ${path}: ${(e as Error).message}`);
    }
    return null;
  }
}

/** One row of {@link retrievalScoresTable}. */
export interface RetrievalScoreRow {
  /** Layer. */
  layer: number;
  /** KV head. */
  head: number;
  /** Echo score. */
  echo: number;
  /** Induction score. */
  induction: number;
  /** Rank by induction over the whole model (1 = highest). */
  rank: number;
}

/** The scores as table rows (layer, KV head) for display, e.g. by `deno task inspect`. */
export function retrievalScoresTable(scores: RetrievalScores): RetrievalScoreRow[] {
  const rows = scores.layers.flatMap((s, layer) =>
    s.echo.map((echo, head) => ({ layer, head, echo, induction: s.induction[head], rank: 0 }))
  );
  [...rows].sort((a, b) => b.induction - a.induction || a.layer - b.layer || a.head - b.head)
    .forEach((r, i) => r.rank = i + 1);
  return rows;
}

const memo = new WeakMap<Engine, Map<string, Promise<HeadScores[]>>>();

/**
 * The executor's model-level sources for `engine`: the retrieval scores, backed by
 * {@link retrievalProfile} and fetched at most once per engine and options (then kept in memory
 * while the engine lives), and each layer's output projection decoded from the loaded weights.
 */
export function engineSources(
  engine: Engine,
  opts: RetrievalProfileOptions = {},
): ModelSources {
  return {
    retrievalScores() {
      const perEngine = memo.get(engine) ?? new Map<string, Promise<HeadScores[]>>();
      memo.set(engine, perEngine);
      const key = JSON.stringify(opts);
      let scores = perEngine.get(key);
      if (!scores) {
        scores = retrievalProfile(engine, opts).then((p) => p.layers);
        scores.catch(() => perEngine.delete(key));
        perEngine.set(key, scores);
      }
      return scores;
    },
    outputProjection: (layer) => tensorToFloat32(engine.weights.get(layerTensorNames(layer).o)),
    reconstruction: {
      prompts: () => repeatPrompts(engine),
      forward: async (cache, ids, firstPosition) => {
        const { acts } = await engine.prefill(
          cache,
          ids,
          engine.prefillChunk,
          "last",
          undefined,
          firstPosition,
        );
        releaseActivations(engine.ctx, acts);
      },
    },
  };
}

/**
 * KVzip's repeat prompts in `engine`'s tokenizer; the suffix is what the chat template writes
 * between a user's message and the assistant's answer (kvpress splits a rendered dummy turn the same
 * way), or "\n" without a template.
 */
function repeatPrompts(engine: Engine): RepeatPrompts {
  const tok = engine.tokenizer;
  if (!tok) throw new ModelError("kvzip needs the model's tokenizer for its repeat prompts");
  const encode = (text: string) => tok.encode(text, { addSpecialTokens: false });
  let suffix = "\n";
  if (engine.chat) {
    const dummy = "dummy context", separator = "\n" + "#".repeat(dummy.length);
    const rendered = renderChat(
      engine.chat,
      [{ role: "user", content: dummy + separator }],
      chatSpecialTokens(engine.config, tok),
    );
    suffix = rendered.split(separator).at(-1)!;
  }
  return {
    first: encode("\n\nRepeat the previous context exactly."),
    later: encode("\n\nRepeat the part of the previous context exactly, starting with"),
    suffix: encode(suffix),
  };
}
