/**
 * The Gemma 3 keys of a Hugging Face `config.json` (`model_type: "gemma3_text"`, transformers'
 * `Gemma3TextConfig`) read into {@link Gemma3Details}, with transformers' defaults: the query
 * scale `query_pre_attn_scalar` (256), the sliding window (4096), `layer_types` (else every 6th
 * layer global, `sliding_window_pattern`), and one RoPE per layer type — `rope_parameters` as
 * `{sliding_attention: {...}, full_attention: {...}}`, or the older `rope_theta` (global,
 * default 1e6), `rope_local_base_freq` (sliding, 10000) and `rope_scaling` (global layers only).
 * Soft-capping and bidirectional attention, which the runtime does not implement, are refused.
 *
 * @module
 */

import { ModelError } from "./errors.ts";
import { type ConfigFields, isObject, parseRopeScaling } from "./configFields.ts";
import { ropeInverseFrequencies, type RopeScaling } from "./rope.ts";
import { tensorToFloat32 } from "./dtype.ts";
import type { Gemma3Details, Tensor } from "./types.ts";

/** Gemma 3's details and its global layers' RoPE, from a validated config's fields. */
export function gemma3FromConfig(
  fields: ConfigFields,
  o: { hiddenSize: number; headDim: number; numLayers: number },
): { gemma3: Gemma3Details; ropeTheta: number; ropeInvFreq: Float64Array } {
  const file = fields.file;
  const act = fields.raw("hidden_activation") ?? fields.raw("hidden_act") ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh") {
    throw new ModelError(
      `${file}: "hidden_activation" ${JSON.stringify(act)} is not supported (only ` +
        `"gelu_pytorch_tanh")`,
    );
  }
  for (const key of ["final_logit_softcapping", "attn_logit_softcapping"]) {
    const value = fields.raw(key);
    if (value !== undefined && value !== null) {
      throw new ModelError(`${file}: "${key}" ${JSON.stringify(value)} is not supported (null)`);
    }
  }
  if (fields.raw("use_bidirectional_attention") === true) {
    throw new ModelError(`${file}: "use_bidirectional_attention": true is not supported`);
  }
  const scalar = fields.positiveNumber("query_pre_attn_scalar", 256);
  const window = fields.positiveInt("sliding_window", 4096);
  const layerWindows = layerTypes(fields, o.numLayers).map((t) => t === "sliding" ? window : null);

  const params = fields.raw("rope_parameters");
  let global: { theta: number; scaling: RopeScaling };
  let local: { theta: number; scaling: RopeScaling };
  if (isObject(params) && (params.full_attention || params.sliding_attention)) {
    global = ropeOf(fields, params.full_attention, "rope_parameters.full_attention", 1e6);
    local = ropeOf(fields, params.sliding_attention, "rope_parameters.sliding_attention", 1e4);
  } else {
    global = {
      theta: fields.positiveNumber("rope_theta", 1e6),
      scaling: parseRopeScaling(fields.raw("rope_scaling"), "rope_scaling", fields),
    };
    local = {
      theta: fields.positiveNumber("rope_local_base_freq", 1e4),
      scaling: { kind: "none" },
    };
  }
  const ropeInvFreq = ropeInverseFrequencies(o.headDim, global.theta, global.scaling);
  const localRopeInvFreq = ropeInverseFrequencies(o.headDim, local.theta, local.scaling);
  if (![...ropeInvFreq, ...localRopeInvFreq].every((f) => Number.isFinite(f) && f > 0)) {
    throw new ModelError(`${file}: the RoPE parameters give non-finite frequencies`);
  }
  return {
    ropeTheta: global.theta,
    ropeInvFreq,
    gemma3: {
      embedScale: Math.fround(Math.sqrt(o.hiddenSize)),
      attentionScale: scalar ** -0.5,
      layerWindows,
      localRopeInvFreq,
    },
  };
}

/**
 * The factor Gemma's RMSNorm multiplies by, `1 + w`, for a norm weight tensor (float32, as
 * transformers' `Gemma3RMSNorm` computes it).
 */
export function gemmaNormScale(weight: Tensor): Float32Array {
  const w = tensorToFloat32(weight);
  for (let i = 0; i < w.length; i++) w[i] = 1 + w[i];
  return w;
}

/** `layer_types`, or transformers' default pattern (every `sliding_window_pattern`-th global). */
function layerTypes(fields: ConfigFields, numLayers: number): ("sliding" | "full")[] {
  const types = fields.raw("layer_types");
  if (types === undefined || types === null) {
    const pattern = fields.positiveInt("sliding_window_pattern", 6);
    return Array.from({ length: numLayers }, (_, i) => (i + 1) % pattern ? "sliding" : "full");
  }
  if (!Array.isArray(types) || types.length !== numLayers) {
    throw new ModelError(
      `${fields.file}: "layer_types" must list one type per layer (${numLayers})`,
    );
  }
  return types.map((t, i) => {
    if (t === "sliding_attention") return "sliding";
    if (t === "full_attention") return "full";
    throw new ModelError(
      `${fields.file}: "layer_types[${i}]" ${JSON.stringify(t)} is not supported ` +
        `("sliding_attention" or "full_attention")`,
    );
  });
}

function ropeOf(
  fields: ConfigFields,
  value: unknown,
  key: string,
  defaultTheta: number,
): { theta: number; scaling: RopeScaling } {
  if (value === undefined || value === null) {
    return { theta: defaultTheta, scaling: { kind: "none" } };
  }
  if (!isObject(value)) throw new ModelError(`${fields.file}: "${key}" must be an object`);
  const theta = value.rope_theta === undefined
    ? defaultTheta
    : fields.positiveNumberAt(value.rope_theta, `${key}.rope_theta`);
  return { theta, scaling: parseRopeScaling(value, key, fields) };
}
