/**
 * Reading and validating a Hugging Face `config.json` for the supported decoder families
 * (Llama, Mistral, Qwen2, Qwen3) into a {@link ModelConfig}. Anything the runtime would get wrong
 * silently (another architecture, activation, rope scaling type, quantization) is refused with a
 * {@link ModelError} naming the file and the field.
 *
 * @module
 */

import { join } from "node:path";
import { ModelError } from "./errors.ts";
import { CONFIG_JSON_LIMIT, readBoundedFile } from "./readBounded.ts";
import { ropeInverseFrequencies, type RopeScaling } from "./rope.ts";
import type { Architecture, ModelConfig } from "./types.ts";

const ARCHITECTURES: readonly Architecture[] = ["llama", "mistral", "qwen2", "qwen3"];

/** Hugging Face defaults for keys a config may omit, per architecture. */
const DEFAULTS: Record<Architecture, { maxPositions: number; rmsNormEps: number }> = {
  llama: { maxPositions: 2048, rmsNormEps: 1e-6 },
  mistral: { maxPositions: 4096 * 32, rmsNormEps: 1e-6 },
  qwen2: { maxPositions: 32768, rmsNormEps: 1e-6 },
  qwen3: { maxPositions: 32768, rmsNormEps: 1e-6 },
};

/**
 * Reads `config.json` from a model folder (a regular file of at most 1 MiB) and validates it with
 * {@link parseConfig}.
 */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = new TextDecoder().decode(
      await readBoundedFile(file, CONFIG_JSON_LIMIT, "a config.json"),
    );
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ModelError(`${file}: not found (a model folder needs a config.json)`);
    }
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ModelError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  return parseConfig(json, file);
}

/**
 * The largest value each dimension may have, checked before anything is allocated: far above
 * every released model (Llama 3.1 405B: 126 layers, hidden 16384, 128 heads; Gemma 3: head_dim
 * 256, vocabulary 262,144), far below what would overflow a buffer size or a kernel's index.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  hidden_size: 65536,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 512,
  vocab_size: 1 << 24,
  max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
};

/**
 * Validates a parsed `config.json` (`file` is used in error messages) and normalises it.
 * Throws {@link ModelError} for a missing or ill-typed field or an unsupported setting.
 */
export function parseConfig(json: unknown, file: string): ModelConfig {
  const fields = new ConfigFields(json, file);
  const modelType = fields.raw("model_type");
  if (typeof modelType !== "string" || !ARCHITECTURES.includes(modelType as Architecture)) {
    throw new ModelError(
      `${file}: "model_type" ${JSON.stringify(modelType ?? null)} is not supported ` +
        `(supported: ${ARCHITECTURES.join(", ")})`,
    );
  }
  const architecture = modelType as Architecture;
  const defaults = DEFAULTS[architecture];

  const hiddenAct = fields.raw("hidden_act") ?? "silu";
  if (hiddenAct !== "silu") {
    throw new ModelError(
      `${file}: "hidden_act" ${JSON.stringify(hiddenAct)} is not supported (only "silu")`,
    );
  }
  if (fields.raw("quantization_config") !== undefined) {
    throw new ModelError(
      `${file}: "quantization_config" is set; quantized checkpoints are not supported`,
    );
  }
  if (fields.raw("mlp_bias") === true) {
    throw new ModelError(`${file}: "mlp_bias": true is not supported`);
  }

  const hiddenSize = fields.positiveInt("hidden_size");
  const numHeads = fields.positiveInt("num_attention_heads");
  const numKvHeads = fields.positiveInt("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelError(
      `${file}: "num_attention_heads" (${numHeads}) must be a multiple of ` +
        `"num_key_value_heads" (${numKvHeads})`,
    );
  }
  let headDim: number;
  if (fields.raw("head_dim") === undefined || fields.raw("head_dim") === null) {
    if (hiddenSize % numHeads !== 0) {
      throw new ModelError(
        `${file}: "hidden_size" (${hiddenSize}) is not a multiple of "num_attention_heads" ` +
          `(${numHeads}) and there is no "head_dim"`,
      );
    }
    headDim = hiddenSize / numHeads;
  } else {
    headDim = fields.positiveInt("head_dim");
  }
  if (headDim % 2 !== 0) {
    throw new ModelError(`${file}: "head_dim" must be even for RoPE, got ${headDim}`);
  }
  if (headDim > CONFIG_LIMITS.head_dim) {
    throw new ModelError(
      `${file}: "head_dim" is ${headDim}, over kvpolicy's limit of ${CONFIG_LIMITS.head_dim}`,
    );
  }

  const maxPositions = fields.positiveInt("max_position_embeddings", defaults.maxPositions);
  const ropeParameters = fields.raw("rope_parameters");
  const ropeSource = isObject(ropeParameters) ? "rope_parameters" : "rope_scaling";
  const ropeTheta = isObject(ropeParameters) && ropeParameters.rope_theta !== undefined
    ? fields.positiveNumberAt(ropeParameters.rope_theta, "rope_parameters.rope_theta")
    : fields.positiveNumber("rope_theta", 10000);
  const ropeScaling = parseRopeScaling(fields.raw(ropeSource), ropeSource, fields);

  const ropeInvFreq = ropeInverseFrequencies(headDim, ropeTheta, ropeScaling);
  if (!ropeInvFreq.every((f) => Number.isFinite(f) && f > 0)) {
    throw new ModelError(
      `${file}: "${ropeSource}" and "rope_theta" give non-finite RoPE frequencies ` +
        `(check the scaling factor)`,
    );
  }
  return {
    architecture,
    hiddenSize,
    intermediateSize: fields.positiveInt("intermediate_size"),
    numLayers: fields.positiveInt("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: fields.positiveInt("vocab_size"),
    rmsNormEps: fields.positiveNumber("rms_norm_eps", defaults.rmsNormEps),
    ropeTheta,
    ropeInvFreq,
    maxPositions,
    tieWordEmbeddings: fields.boolean("tie_word_embeddings", false),
    attentionBias: architecture === "qwen2" ||
      ((architecture === "llama" || architecture === "qwen3") &&
        fields.boolean("attention_bias", false)),
    qkNorm: architecture === "qwen3",
    bosTokenId: fields.optionalTokenIds("bos_token_id")?.[0] ?? null,
    eosTokenIds: fields.optionalTokenIds("eos_token_id") ?? [],
    ...slidingWindowOf(architecture, maxPositions, fields),
  };
}

/** Mistral records a window that can take effect; Qwen2 refuses `use_sliding_window: true`. */
function slidingWindowOf(
  architecture: Architecture,
  maxPositions: number,
  fields: ConfigFields,
): { slidingWindow?: number } {
  if (architecture === "qwen2" || architecture === "qwen3") {
    if (fields.raw("use_sliding_window") === true) {
      throw new ModelError(`${fields.file}: "use_sliding_window": true is not supported`);
    }
    return {};
  }
  if (architecture !== "mistral") return {};
  const window = fields.raw("sliding_window");
  if (window === undefined || window === null) return {};
  const size = fields.positiveInt("sliding_window");
  return size < maxPositions ? { slidingWindow: size } : {};
}

function parseRopeScaling(value: unknown, key: string, fields: ConfigFields): RopeScaling {
  if (value === undefined || value === null) return { kind: "none" };
  if (!isObject(value)) {
    throw new ModelError(`${fields.file}: "${key}" must be an object or null`);
  }
  const typeKey = value.rope_type !== undefined ? "rope_type" : "type";
  const type = value[typeKey];
  const at = (name: string) => fields.positiveNumberAt(value[name], `${key}.${name}`);
  if (type === "default" || (type === undefined && key === "rope_parameters")) {
    return { kind: "none" };
  }
  if (type === "linear") return { kind: "linear", factor: at("factor") };
  if (type === "llama3") {
    const scaling: RopeScaling = {
      kind: "llama3",
      factor: at("factor"),
      lowFreqFactor: at("low_freq_factor"),
      highFreqFactor: at("high_freq_factor"),
      originalMaxPositions: at("original_max_position_embeddings"),
    };
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
      throw new ModelError(
        `${fields.file}: "${key}.high_freq_factor" must be greater than "${key}.low_freq_factor"`,
      );
    }
    return scaling;
  }
  throw new ModelError(
    `${fields.file}: "${key}.${typeKey}" ${JSON.stringify(type ?? null)} is not supported ` +
      `(supported: "linear", "llama3")`,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Typed access to the keys of one config object, with errors that name the file and key. */
class ConfigFields {
  readonly file: string;
  private readonly json: Record<string, unknown>;

  constructor(json: unknown, file: string) {
    if (!isObject(json)) throw new ModelError(`${file}: must hold a JSON object`);
    this.json = json;
    this.file = file;
  }

  raw(key: string): unknown {
    return this.json[key];
  }

  positiveInt(key: string, fallback?: number): number {
    const value = this.json[key];
    if ((value === undefined || value === null) && fallback !== undefined) return fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      throw new ModelError(
        `${this.file}: "${key}" must be a positive integer, got ${describe(value)}`,
      );
    }
    const max = CONFIG_LIMITS[key];
    if (max !== undefined && value > max) {
      throw new ModelError(
        `${this.file}: "${key}" is ${value}, over kvpolicy's limit of ${max}`,
      );
    }
    return value;
  }

  positiveNumber(key: string, fallback: number): number {
    const value = this.json[key];
    if (value === undefined || value === null) return fallback;
    return this.positiveNumberAt(value, key);
  }

  positiveNumberAt(value: unknown, key: string): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      throw new ModelError(
        `${this.file}: "${key}" must be a positive number, got ${describe(value)}`,
      );
    }
    return value;
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.json[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "boolean") {
      throw new ModelError(`${this.file}: "${key}" must be true or false, got ${describe(value)}`);
    }
    return value;
  }

  /** A token id or a list of token ids; undefined when absent or null. */
  optionalTokenIds(key: string): number[] | undefined {
    const value = this.json[key];
    if (value === undefined || value === null) return undefined;
    const list = Array.isArray(value) ? value : [value];
    for (const id of list) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
        throw new ModelError(
          `${this.file}: "${key}" must be a token id or a list of token ids, got ${
            describe(value)
          }`,
        );
      }
    }
    return list as number[];
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing (the key is missing)";
  const text = JSON.stringify(value);
  return text.length > 40 ? text.slice(0, 40) + "…" : text;
}
