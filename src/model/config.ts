/**
 * Reading and validating a Hugging Face `config.json` for the supported decoder families
 * (Llama, Mistral, Qwen2, Qwen3, Gemma 3) into a {@link ModelConfig}. Anything the runtime would
 * get wrong silently (another architecture, activation, rope scaling type, quantization) is refused
 * with a {@link ModelError} naming the file and the field.
 *
 * @module
 */

import { join } from "node:path";
import { ModelError } from "./errors.ts";
import { CONFIG_JSON_LIMIT, readBoundedFile } from "./readBounded.ts";
import { ropeInverseFrequencies } from "./rope.ts";
import { ConfigFields, isObject, parseRopeScaling } from "./configFields.ts";
import { CONFIG_LIMITS } from "./configLimits.ts";
import { gemma3FromConfig } from "./gemma3Config.ts";
import type { Architecture, ModelConfig } from "./types.ts";

export { CONFIG_LIMITS };

/** `model_type` values read, and the architecture each names. */
const MODEL_TYPES: Record<string, Architecture> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma3_text: "gemma3",
};

/** Hugging Face defaults for keys a config may omit, per architecture. */
const DEFAULTS: Record<Architecture, { maxPositions: number; rmsNormEps: number }> = {
  llama: { maxPositions: 2048, rmsNormEps: 1e-6 },
  mistral: { maxPositions: 4096 * 32, rmsNormEps: 1e-6 },
  qwen2: { maxPositions: 32768, rmsNormEps: 1e-6 },
  qwen3: { maxPositions: 32768, rmsNormEps: 1e-6 },
  gemma3: { maxPositions: 131072, rmsNormEps: 1e-6 },
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
 * Validates a parsed `config.json` (`file` is used in error messages) and normalises it.
 * Throws {@link ModelError} for a missing or ill-typed field or an unsupported setting.
 */
export function parseConfig(json: unknown, file: string): ModelConfig {
  const fields = new ConfigFields(json, file);
  const modelType = fields.raw("model_type");
  if (typeof modelType !== "string" || !Object.hasOwn(MODEL_TYPES, modelType)) {
    throw new ModelError(
      `${file}: "model_type" ${JSON.stringify(modelType ?? null)} is not supported ` +
        `(supported: ${Object.keys(MODEL_TYPES).join(", ")})`,
    );
  }
  const architecture = MODEL_TYPES[modelType];
  const defaults = DEFAULTS[architecture];
  const gemma = architecture === "gemma3";

  const hiddenAct = fields.raw("hidden_act") ?? "silu";
  if (!gemma && hiddenAct !== "silu") {
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
  const noHeadDim = fields.raw("head_dim") === undefined || fields.raw("head_dim") === null;
  if (noHeadDim && gemma) {
    headDim = 256; // Gemma3TextConfig's default
  } else if (noHeadDim) {
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
  const numLayers = fields.positiveInt("num_hidden_layers");
  const sizes = { hiddenSize, numHeads, numKvHeads, headDim, maxPositions, numLayers };
  if (gemma) {
    return {
      ...common(fields, architecture, sizes),
      ...gemma3FromConfig(fields, { hiddenSize, headDim, numLayers }),
      rmsNormEps: fields.positiveNumber("rms_norm_eps", defaults.rmsNormEps),
      tieWordEmbeddings: fields.boolean("tie_word_embeddings", true),
      attentionBias: fields.boolean("attention_bias", false),
      qkNorm: true,
    };
  }
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
    ...common(fields, architecture, sizes),
    rmsNormEps: fields.positiveNumber("rms_norm_eps", defaults.rmsNormEps),
    ropeTheta,
    ropeInvFreq,
    tieWordEmbeddings: fields.boolean("tie_word_embeddings", false),
    attentionBias: architecture === "qwen2" ||
      ((architecture === "llama" || architecture === "qwen3") &&
        fields.boolean("attention_bias", false)),
    qkNorm: architecture === "qwen3",
    ...slidingWindowOf(architecture, maxPositions, fields),
  };
}

/** The fields every family reads alike. */
function common(
  fields: ConfigFields,
  architecture: Architecture,
  o: {
    hiddenSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    maxPositions: number;
    numLayers: number;
  },
) {
  return {
    architecture,
    ...o,
    intermediateSize: fields.positiveInt("intermediate_size"),
    vocabSize: fields.positiveInt("vocab_size"),
    bosTokenId: fields.optionalTokenIds("bos_token_id")?.[0] ?? null,
    eosTokenIds: fields.optionalTokenIds("eos_token_id") ?? [],
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
