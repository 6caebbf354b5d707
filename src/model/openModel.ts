/**
 * One entry point for every checkpoint a user may hand to `--model`: a Hugging Face folder
 * (`config.json`, safetensors, `tokenizer.json`), a GGUF file, or a folder holding exactly one
 * GGUF file. Returns the weights, the tokenizer, the chat template and what was measured while
 * loading; {@link readModelHeader} reads the config and chat template alone (no tensor data).
 *
 * @module
 */

import { basename, join } from "node:path";
import { type ChatTemplate, chatTemplateFromConfig, parseChatTemplate } from "./chatTemplate.ts";
import { loadConfig } from "./config.ts";
import { ModelError } from "./errors.ts";
import { readGgufHeader } from "./ggufFile.ts";
import { configFromGguf, isGgufPath, loadGgufModel } from "./ggufModel.ts";
import { ggufSpecialTokens, tokenizerFromGguf } from "./ggufTokenizer.ts";
import type { GgufMetadata } from "./ggufTypes.ts";
import { loadModel } from "./loadModel.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
import {
  CHAT_TEMPLATE_LIMIT,
  decodeUtf8,
  readBoundedFile,
  TOKENIZER_JSON_LIMIT,
} from "./readBounded.ts";
import type { ModelConfig, ModelWeights } from "./types.ts";

/** What `--model` names, once resolved. */
export interface ModelLocation {
  /** `hf`: a Hugging Face folder; `gguf`: a GGUF file. */
  format: "hf" | "gguf";
  /** The folder (hf) or the file (gguf). */
  path: string;
}

/** A loaded checkpoint with its tokenizer. */
export interface OpenedModel {
  /** Where it came from. */
  location: ModelLocation;
  /** Weights and config. */
  weights: ModelWeights;
  /** The tokenizer, or null when the checkpoint has none (no `tokenizer.json` / `tokenizer.ggml.*`). */
  tokenizer: TextTokenizer | null;
  /** The chat template, or null when the checkpoint has none (see {@link readModelHeader}). */
  chat: ChatTemplate | null;
  /** Wall time of reading, dequantizing and validating, in milliseconds. */
  loadMs: number;
}

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Called as tensor data is read: bytes done and bytes in total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Resolves `path`: a `.gguf` file, a folder with `config.json` (Hugging Face), or a folder with
 * exactly one `.gguf` file. Throws {@link ModelError} otherwise.
 */
export async function locateModel(path: string): Promise<ModelLocation> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new ModelError(`${path}: not found`);
    throw new ModelError(`${path}: cannot be read (${(error as Error).message})`);
  }
  if (info.isFile) {
    if (isGgufPath(path)) return { format: "gguf", path };
    throw new ModelError(
      `${path}: a model is a Hugging Face folder or a .gguf file, not this file`,
    );
  }
  if (!info.isDirectory) throw new ModelError(`${path}: not a file or a folder`);
  const ggufs: string[] = [];
  let hasConfig = false;
  for await (const entry of Deno.readDir(path)) {
    if (entry.name === "config.json") hasConfig = true;
    else if (isGgufPath(entry.name) && !entry.isDirectory) ggufs.push(entry.name);
  }
  if (hasConfig) return { format: "hf", path };
  if (ggufs.length === 1) return { format: "gguf", path: join(path, ggufs[0]) };
  if (ggufs.length > 1) {
    throw new ModelError(
      `${path}: holds several GGUF files (${ggufs.sort().join(", ")}); name one with --model`,
    );
  }
  throw new ModelError(
    `${path}: not a model folder (no config.json and no .gguf file)`,
  );
}

/** Loads the model that `path` names (see {@link locateModel}) with its tokenizer. */
export async function openModel(path: string, opts: OpenModelOptions = {}): Promise<OpenedModel> {
  const location = await locateModel(path);
  const start = performance.now();
  if (location.format === "hf") {
    const weights = await loadModel(location.path, { onProgress: opts.onProgress });
    const tokenizer = await loadTokenizer(location.path);
    const chat = await hfChatTemplate(location.path);
    return { location, weights, tokenizer, chat, loadMs: performance.now() - start };
  }
  const { weights, header } = await loadGgufModel(location.path, { onProgress: opts.onProgress });
  // A GGUF without tokenizer keys (rare: some conversions) runs from token ids, like an HF folder
  // without tokenizer.json.
  const tokenizer = header.metadata.has("tokenizer.ggml.model")
    ? tokenizerFromGguf(header.metadata, location.path)
    : null;
  const chat = ggufChatTemplate(header.metadata, location.path);
  return { location, weights, tokenizer, chat, loadMs: performance.now() - start };
}

/** A checkpoint's config and chat template, read without its tensor data. */
export interface ModelHeader {
  /** The validated config. */
  config: ModelConfig;
  /** Where the config came from, for messages: `DIR/config.json`, or `FILE (GGUF metadata)`. */
  configSource: string;
  /** The chat template, or null when the checkpoint has none. */
  chat: ChatTemplate | null;
}

/**
 * Reads what a model is without loading it: a Hugging Face folder's `config.json` and chat
 * template, or a GGUF file's header (metadata and tensor table). Throws {@link ModelError}.
 */
export async function readModelHeader(location: ModelLocation): Promise<ModelHeader> {
  if (location.format === "hf") {
    return {
      config: await loadConfig(location.path),
      configSource: join(location.path, "config.json"),
      chat: await hfChatTemplate(location.path),
    };
  }
  const header = await readGgufHeader(location.path);
  return {
    config: configFromGguf(header),
    configSource: `${location.path} (GGUF metadata)`,
    chat: ggufChatTemplate(header.metadata, location.path),
  };
}

/**
 * What a checkpoint at `checkpointPath` (a folder or a `.gguf` file, as `ModelWeights.dir` holds)
 * lacks when it has no tokenizer, for messages: `no tokenizer.json`, or the GGUF keys.
 */
export function missingTokenizerText(checkpointPath: string): string {
  return isGgufPath(checkpointPath)
    ? "no tokenizer (no tokenizer.ggml.* metadata in the GGUF file)"
    : "no tokenizer.json";
}

/** `tokenizer.chat_template` of a GGUF with a tokenizer, parsed; null when absent. */
function ggufChatTemplate(meta: GgufMetadata, file: string): ChatTemplate | null {
  if (!meta.has("tokenizer.ggml.model")) return null;
  const text = ggufSpecialTokens(meta, file).chatTemplate;
  return text === undefined ? null : parseChatTemplate(text, `${file}: tokenizer.chat_template`);
}

/**
 * A Hugging Face folder's chat template: `chat_template` of `tokenizer_config.json`, else the
 * file `chat_template.jinja` (newer transformers save it there); null when neither exists.
 */
async function hfChatTemplate(dir: string): Promise<ChatTemplate | null> {
  const configFile = join(dir, "tokenizer_config.json");
  const configText = await readTextIfPresent(configFile, TOKENIZER_JSON_LIMIT);
  if (configText !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(configText);
    } catch (error) {
      throw new ModelError(`${configFile}: not valid JSON (${(error as Error).message})`);
    }
    const chat = chatTemplateFromConfig(json, configFile);
    if (chat !== null) return chat;
  }
  const jinjaFile = join(dir, "chat_template.jinja");
  const jinja = await readTextIfPresent(jinjaFile, CHAT_TEMPLATE_LIMIT);
  return jinja === undefined ? null : parseChatTemplate(jinja, jinjaFile);
}

/**
 * The text of a regular file of at most `limit` bytes (`tokenizer_config.json`: 64 MiB,
 * `chat_template.jinja`: 1 MiB), strict UTF-8; undefined when there is no file.
 */
async function readTextIfPresent(file: string, limit: number): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readBoundedFile(file, limit, `a ${basename(file)}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return decodeUtf8(bytes, file);
}
