/**
 * Loading a GGUF checkpoint (llama.cpp, Ollama, LM Studio) as the runtime's {@link ModelWeights}:
 * the model config from the architecture's metadata keys (`llama.block_count`, ...), tensors
 * renamed from llama.cpp's names (`blk.0.attn_q.weight`) to Hugging Face's, dimensions reversed
 * (ggml lists the innermost first), quantized matrices repacked as block-int8 (`blockInt8.ts`:
 * int8 codes with a float32 scale and min per block of 16 or 32, the exact values of
 * `gguf.quants.dequantize` at ~1.3 bytes per weight; F32, F16 and BF16 tensors keep their type,
 * other quantized tensors are dequantized to F32), and the Q/K row permutation that llama.cpp's converter applies to
 * Llama checkpoints (`convert_hf_to_gguf.py`, `LlamaModel.permute`) undone.
 *
 * @module
 */

import { basename } from "node:path";
import { parseConfig } from "./config.ts";
import { ModelError } from "./errors.ts";
import { openRegularFile, parseGgufHeader, readTensorBytes } from "./ggufFile.ts";
import type { GgufHeader, GgufTensorInfo } from "./ggufFile.ts";
import { dequantize, toBlockInt8 } from "./ggufQuants.ts";
import { ggufSpecialTokens } from "./ggufTokenizer.ts";
import type { GgufMetadata } from "./ggufTypes.ts";
import { checkFinite, checkTensorShapes, weightsFromTensors } from "./loadModel.ts";
import { expectedTensorShapes } from "./tensorShapes.ts";
import { tensorToFloat32 } from "./dtype.ts";
import type { ModelConfig, ModelWeights, Tensor } from "./types.ts";

/** GGUF `general.architecture` values we run, with the Hugging Face `model_type` each maps to. */
const ARCHITECTURES: Record<string, string> = {
  llama: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma3: "gemma3_text",
};

/** Architectures whose Q/K rows llama.cpp's converter permutes (RoPE in GPT-J's interleaved layout). */
const PERMUTED_QK = new Set(["llama"]);

/** llama.cpp tensor name (after `blk.N.`) → Hugging Face name (after `model.layers.N.`). */
const LAYER_TENSORS: Record<string, string> = {
  "attn_norm.weight": "input_layernorm.weight",
  "attn_q.weight": "self_attn.q_proj.weight",
  "attn_k.weight": "self_attn.k_proj.weight",
  "attn_v.weight": "self_attn.v_proj.weight",
  "attn_q.bias": "self_attn.q_proj.bias",
  "attn_k.bias": "self_attn.k_proj.bias",
  "attn_v.bias": "self_attn.v_proj.bias",
  "attn_output.weight": "self_attn.o_proj.weight",
  "attn_q_norm.weight": "self_attn.q_norm.weight",
  "attn_k_norm.weight": "self_attn.k_norm.weight",
  "ffn_norm.weight": "post_attention_layernorm.weight",
  "ffn_gate.weight": "mlp.gate_proj.weight",
  "ffn_up.weight": "mlp.up_proj.weight",
  "ffn_down.weight": "mlp.down_proj.weight",
};

/** Gemma 3's layer norms, where its names differ from the Llama layout's. */
const GEMMA3_LAYER_TENSORS: Record<string, string> = {
  ...LAYER_TENSORS,
  "ffn_norm.weight": "pre_feedforward_layernorm.weight",
  "post_attention_norm.weight": "post_attention_layernorm.weight",
  "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
};

/** Top-level llama.cpp tensor names → Hugging Face names. */
const GLOBAL_TENSORS: Record<string, string> = {
  "token_embd.weight": "model.embed_tokens.weight",
  "output_norm.weight": "model.norm.weight",
  "output.weight": "lm_head.weight",
};

/** Tensors llama.cpp files may carry that the forward pass does not read (or reads as config). */
const IGNORED_TENSORS = new Set(["rope_freqs.weight"]);

/** Options of {@link loadGgufModel}. */
export interface LoadGgufOptions {
  /** Called as tensor data is read: bytes done and bytes in total. */
  onProgress?: (done: number, total: number) => void;
}

/** A loaded GGUF checkpoint: the weights and the header (whose metadata holds the tokenizer). */
export interface GgufModel {
  /** Weights in the runtime's format, config included. */
  weights: ModelWeights;
  /** The validated header. */
  header: GgufHeader;
}

/**
 * Reads a GGUF file into {@link ModelWeights}. Throws {@link ModelError} naming the file and the
 * metadata key or tensor on any problem.
 */
export async function loadGgufModel(file: string, opts: LoadGgufOptions = {}): Promise<GgufModel> {
  const handle = await openRegularFile(file);
  try {
    const header = await parseGgufHeader(handle, file);
    const config = configFromGguf(header);
    checkGgufShapes(header, config);
    const byName = new Map(header.tensors.map((t) => [t.name, t]));
    const total = header.tensors.reduce((sum, t) => sum + t.bytes, 0);
    let done = 0;
    const tensors = new Map<string, Tensor>();
    for (const info of header.tensors) {
      if (IGNORED_TENSORS.has(info.name)) continue;
      const name = hfTensorName(info.name, config, file);
      const raw = await readTensorBytes(handle, info, file);
      done += info.bytes;
      opts.onProgress?.(done, total);
      let tensor = toRuntimeTensor(name, info, raw);
      // llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w; transformers and the
      // runtime read w (Gemma2TensorProcessor subtracts the 1 again, in float32, as here).
      if (config.gemma3 && name.endsWith("norm.weight")) tensor = shiftedByMinusOne(tensor);
      if (PERMUTED_QK.has(config.architecture)) {
        if (name.endsWith("self_attn.q_proj.weight")) {
          tensor = unpermuteRows(tensor, config.numHeads);
        } else if (name.endsWith("self_attn.k_proj.weight")) {
          tensor = unpermuteRows(tensor, config.numKvHeads);
        }
      }
      tensors.set(name, tensor);
    }
    const ropeFreqs = byName.get("rope_freqs.weight");
    if (ropeFreqs !== undefined) {
      applyRopeFactors(config, ropeFreqs, await readTensorBytes(handle, ropeFreqs, file), file);
    }
    checkTensorShapes(config, tensors, file);
    checkFinite(tensors, file);
    return { weights: weightsFromTensors(file, config, tensors), header };
  } finally {
    handle.close();
  }
}

/**
 * The model config from a GGUF header's metadata (keys prefixed by `general.architecture`), with
 * the vocabulary size and tied embeddings taken from the tensor table.
 */
export function configFromGguf(header: GgufHeader): ModelConfig {
  const { metadata: meta, file } = header;
  const arch = meta.get("general.architecture");
  if (typeof arch !== "string" || ARCHITECTURES[arch] === undefined) {
    throw new ModelError(
      `${file}: "general.architecture" ${JSON.stringify(arch ?? null)} is not supported ` +
        `(supported: ${Object.keys(ARCHITECTURES).join(", ")})`,
    );
  }
  const key = new MetadataFields(meta, file, arch);
  const embedding = header.tensors.find((t) => t.name === "token_embd.weight");
  if (embedding === undefined) {
    throw new ModelError(`${file}: tensor "token_embd.weight" is missing`);
  }
  const hidden = key.int("embedding_length");
  const heads = key.int("attention.head_count");
  const headDim = key.int("attention.key_length", Math.floor(hidden / heads));
  const layers = key.int("block_count");
  // Sizes that set loops and tables (layers, RoPE's per-dimension table) must fit the tensor
  // table, so that a lying key cannot hang or exhaust memory before the shapes are checked.
  if (layers > header.tensors.length) {
    throw new ModelError(
      `${file}: "${arch}.block_count" is ${layers}, but the file holds ${header.tensors.length} tensors`,
    );
  }
  const largest = header.tensors.reduce((m, t) => t.dims.reduce((a, d) => Math.max(a, d), m), 0);
  for (const name of ["embedding_length", "attention.head_count", "attention.key_length"]) {
    const value = key.int(name, 1);
    if (value > largest) {
      throw new ModelError(
        `${file}: "${arch}.${name}" is ${value}, more than any tensor dimension (${largest})`,
      );
    }
  }
  const valueDim = key.int("attention.value_length", headDim);
  if (valueDim !== headDim) {
    throw new ModelError(`${file}: "${arch}.attention.value_length" differs from key_length`);
  }
  const ropeDims = key.int("rope.dimension_count", headDim);
  if (ropeDims !== headDim) {
    throw new ModelError(
      `${file}: "${arch}.rope.dimension_count" is ${ropeDims}, but partial RoPE ` +
        `(fewer rotated dimensions than head_dim ${headDim}) is not supported`,
    );
  }
  const tokens = meta.get("tokenizer.ggml.tokens");
  const json: Record<string, unknown> = {
    model_type: ARCHITECTURES[arch],
    hidden_size: hidden,
    intermediate_size: key.int("feed_forward_length"),
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: key.int("attention.head_count_kv", heads),
    head_dim: headDim,
    vocab_size: embedding.dims[1] ?? (Array.isArray(tokens) ? tokens.length : undefined),
    rms_norm_eps: key.number("attention.layer_norm_rms_epsilon"),
    rope_theta: key.number("rope.freq_base", 10000),
    max_position_embeddings: key.int("context_length"),
    tie_word_embeddings: !header.tensors.some((t) => t.name === "output.weight"),
    attention_bias: header.tensors.some((t) => t.name === "blk.0.attn_q.bias"),
    rope_scaling: ropeScalingOf(key),
    ...specialTokenIds(meta, file),
    ...(arch === "gemma3" ? gemma3Keys(key, { hidden, heads, headDim, layers }) : {}),
  };
  return parseConfig(json, `${file} (GGUF metadata)`);
}

/**
 * Gemma 3's config keys as llama.cpp reads them (`llama-model.cpp`): the window from
 * `attention.sliding_window`, every 6th layer global, the sliding layers' RoPE base 10000, and
 * attention scaled by 1/√head_dim — except the 27B model (62 layers), scaled by
 * 1/√(hidden / heads) as its Hugging Face config's `query_pre_attn_scalar` says.
 */
function gemma3Keys(
  key: MetadataFields,
  o: { hidden: number; heads: number; headDim: number; layers: number },
): Record<string, unknown> {
  return {
    sliding_window: key.int("attention.sliding_window"),
    sliding_window_pattern: 6,
    rope_local_base_freq: 10000,
    query_pre_attn_scalar: o.layers === 62 ? o.hidden / o.heads : o.headDim,
  };
}

function ropeScalingOf(key: MetadataFields): Record<string, unknown> | null {
  const type = key.optionalString("rope.scaling.type");
  if (type === undefined || type === "none") return null;
  if (type === "linear") return { type: "linear", factor: key.number("rope.scaling.factor") };
  throw new ModelError(
    `${key.file}: "${key.arch}.rope.scaling.type" ${JSON.stringify(type)} is not supported ` +
      `(supported: none, linear; Llama 3.1 frequency factors come as rope_freqs.weight)`,
  );
}

/** BOS and the ids that end generation (EOS, end of turn), as llama.cpp reads them. */
function specialTokenIds(
  meta: GgufMetadata,
  file: string,
): { bos_token_id?: number; eos_token_id?: number[] } {
  if (!meta.has("tokenizer.ggml.model")) return {};
  const special = ggufSpecialTokens(meta, file);
  return { bos_token_id: special.bosId, eos_token_id: special.eosIds };
}

/**
 * Checks every tensor's shape against the config before any data is read (and before Q/K rows
 * are un-permuted, which needs whole heads), naming the tensor as the file does.
 */
function checkGgufShapes(header: GgufHeader, config: ModelConfig): void {
  const expected = expectedTensorShapes(config);
  for (const info of header.tensors) {
    if (IGNORED_TENSORS.has(info.name)) continue;
    const want = expected.get(hfTensorName(info.name, config, header.file));
    const shape = [...info.dims].reverse();
    if (
      want !== undefined && (want.length !== shape.length || want.some((d, i) => d !== shape[i]))
    ) {
      throw new ModelError(
        `${header.file}: tensor "${info.name}" has shape [${shape.join(", ")}] but the GGUF ` +
          `metadata implies [${want.join(", ")}]`,
      );
    }
  }
}

/** Llama 3.1-style per-frequency divisors stored as `rope_freqs.weight` (F32, headDim/2). */
function applyRopeFactors(
  config: ModelConfig,
  info: GgufTensorInfo,
  raw: Uint8Array,
  file: string,
): void {
  const factors = dequantize(info.type, raw, info.elements);
  if (factors.length !== config.ropeInvFreq.length) {
    throw new ModelError(
      `${file}: tensor "rope_freqs.weight" has ${factors.length} entries, expected ${config.ropeInvFreq.length}`,
    );
  }
  for (let i = 0; i < factors.length; i++) {
    if (!(factors[i] > 0)) {
      throw new ModelError(`${file}: tensor "rope_freqs.weight" holds a non-positive factor`);
    }
    config.ropeInvFreq[i] /= factors[i];
  }
}

/** Hugging Face name of a llama.cpp tensor name, or a clear error for one we do not know. */
function hfTensorName(name: string, config: ModelConfig, file: string): string {
  const global = GLOBAL_TENSORS[name];
  if (global !== undefined) return global;
  const match = /^blk\.(\d+)\.(.+)$/.exec(name);
  const names = config.gemma3 ? GEMMA3_LAYER_TENSORS : LAYER_TENSORS;
  if (match !== null && Object.hasOwn(names, match[2])) {
    const layer = Number(match[1]);
    if (layer >= config.numLayers) {
      throw new ModelError(`${file}: tensor "${name}" names layer ${layer} of ${config.numLayers}`);
    }
    return `model.layers.${layer}.${names[match[2]]}`;
  }
  throw new ModelError(
    `${file}: tensor "${name}" is not part of a supported architecture's forward pass`,
  );
}

/** A vector tensor minus 1, as float32. */
function shiftedByMinusOne(tensor: Tensor): Tensor {
  const values = tensorToFloat32(tensor);
  for (let i = 0; i < values.length; i++) values[i] -= 1;
  return { ...tensor, dtype: "F32", data: new Uint8Array(values.buffer) };
}

/**
 * A tensor in runtime form: HF shape (dims reversed); F32/F16/BF16 kept; quantized matrices as
 * block-int8 (`blockInt8.ts`, the same values at ~1.3 bytes per weight); other quantized tensors
 * (vectors, rows that are not whole blocks) dequantized to F32.
 */
function toRuntimeTensor(name: string, info: GgufTensorInfo, raw: Uint8Array): Tensor {
  const shape = [...info.dims].reverse();
  if (info.type === "F32" || info.type === "F16" || info.type === "BF16") {
    return { name, dtype: info.type, shape, data: raw };
  }
  // Rows of whole blocks (of 32, which the blocks of 16 divide).
  if (shape.length === 2 && shape[1] % 32 === 0) {
    const blocks = toBlockInt8(info.type, raw, info.elements);
    if (blocks !== null) return { name, dtype: blocks.dtype, shape, data: blocks.data };
  }
  const values = dequantize(info.type, raw, info.elements);
  return { name, dtype: "F32", shape, data: new Uint8Array(values.buffer) };
}

/**
 * Undoes llama.cpp's Q/K permutation. Within each head of `headDim` rows, GGUF row `2i + s`
 * holds Hugging Face row `s * headDim/2 + i` (s ∈ {0, 1}): the converter interleaved the two
 * rotary halves. Works on raw row bytes, so any stored type is fine.
 */
export function unpermuteRows(tensor: Tensor, heads: number): Tensor {
  const [rows] = tensor.shape;
  const rowBytes = tensor.data.byteLength / rows;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Uint8Array(tensor.data.byteLength);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let s = 0; s < 2; s++) {
        const from = (h * headDim + 2 * i + s) * rowBytes;
        const to = (h * headDim + s * half + i) * rowBytes;
        out.set(tensor.data.subarray(from, from + rowBytes), to);
      }
    }
  }
  return { ...tensor, data: out };
}

/** Typed access to `<arch>.<key>` metadata with errors naming the file and the key. */
class MetadataFields {
  constructor(readonly meta: GgufMetadata, readonly file: string, readonly arch: string) {}

  int(key: string, fallback?: number): number {
    const full = `${this.arch}.${key}`;
    const value = this.meta.get(full);
    if (value === undefined && fallback !== undefined) return fallback;
    const n = typeof value === "bigint" ? Number(value) : value;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) {
      throw new ModelError(
        `${this.file}: "${full}" must be a positive integer, got ${describe(value)}`,
      );
    }
    return n;
  }

  number(key: string, fallback?: number): number {
    const full = `${this.arch}.${key}`;
    const value = this.meta.get(full);
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      throw new ModelError(
        `${this.file}: "${full}" must be a positive number, got ${describe(value)}`,
      );
    }
    return value;
  }

  optionalString(key: string): string | undefined {
    const full = `${this.arch}.${key}`;
    const value = this.meta.get(full);
    if (value === undefined) return undefined;
    if (typeof value !== "string") throw new ModelError(`${this.file}: "${full}" must be a string`);
    return value;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing (the key is missing)";
  if (typeof value === "bigint") return value.toString();
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? text.slice(0, 40) + "…" : text;
}

/** Whether `path` names a GGUF file by its extension. */
export function isGgufPath(path: string): boolean {
  return basename(path).toLowerCase().endsWith(".gguf");
}
