/**
 * One entry point for every checkpoint a user may hand to `--model`: a Hugging Face folder
 * (`config.json`, safetensors, `tokenizer.json`), a GGUF file, or a folder holding exactly one
 * GGUF file. Returns the weights, the tokenizer and what was measured while loading.
 *
 * @module
 */

import { join } from "node:path";
import { ModelError } from "./errors.ts";
import { isGgufPath, loadGgufModel } from "./ggufModel.ts";
import { tokenizerFromGguf } from "./ggufTokenizer.ts";
import { loadModel } from "./loadModel.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
import type { ModelWeights } from "./types.ts";

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
    return { location, weights, tokenizer, loadMs: performance.now() - start };
  }
  const { weights, header } = await loadGgufModel(location.path, { onProgress: opts.onProgress });
  // A GGUF without tokenizer keys (rare: some conversions) runs from token ids, like an HF folder
  // without tokenizer.json.
  const tokenizer = header.metadata.has("tokenizer.ggml.model")
    ? tokenizerFromGguf(header.metadata, location.path)
    : null;
  return { location, weights, tokenizer, loadMs: performance.now() - start };
}
