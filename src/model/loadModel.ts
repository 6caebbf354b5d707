/**
 * Loading a Hugging Face model folder: `config.json` plus safetensors weights (single file or
 * sharded), checked against each other so that a config that lies about sizes is refused.
 *
 * @module
 */

import { loadConfig } from "./config.ts";
import { firstNonFinite } from "./dtype.ts";
import { ModelError } from "./errors.ts";
import { type ProgressCallback, readCheckpointTensors } from "./safetensors.ts";
import { expectedTensorShapes } from "./tensorShapes.ts";
import type { ModelConfig, ModelWeights, Tensor } from "./types.ts";

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** Called as tensor data is read: bytes done and bytes in total. */
  onProgress?: ProgressCallback;
}

/**
 * Loads `config.json` and the checkpoint tensors from `dir`, and checks that every tensor the
 * forward pass needs exists with the shape the config implies. Throws {@link ModelError} naming
 * the file, field or tensor on any problem.
 */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<ModelWeights> {
  const config = await loadConfig(dir);
  const tensors = await readCheckpointTensors(dir, opts.onProgress);
  checkTensorShapes(config, tensors, dir);
  checkFinite(tensors, dir);
  return weightsFromTensors(dir, config, tensors);
}

/** Throws {@link ModelError} naming the first tensor that holds a NaN or an infinity. */
export function checkFinite(tensors: ReadonlyMap<string, Tensor>, dir: string): void {
  for (const tensor of tensors.values()) {
    const at = firstNonFinite(tensor);
    if (at >= 0) {
      throw new ModelError(
        `${dir}: tensor "${tensor.name}" holds a NaN or infinite value (element ${at}); the checkpoint is corrupt`,
      );
    }
  }
}

/**
 * Checks that `tensors` holds every tensor {@link expectedTensorShapes} lists for `config`, with
 * exactly that shape. `dir` names the model folder in error messages.
 */
export function checkTensorShapes(
  config: ModelConfig,
  tensors: ReadonlyMap<string, Tensor>,
  dir: string,
): void {
  for (const [name, expected] of expectedTensorShapes(config)) {
    const tensor = tensors.get(name);
    if (tensor === undefined) {
      const hint = name === "lm_head.weight" ? ' (or set "tie_word_embeddings": true)' : "";
      throw new ModelError(`${dir}: tensor "${name}" is missing from the checkpoint${hint}`);
    }
    if (!sameShape(tensor.shape, expected)) {
      throw new ModelError(
        `${dir}: tensor "${name}" has shape [${tensor.shape.join(", ")}] but config.json ` +
          `implies [${expected.join(", ")}]`,
      );
    }
  }
}

/** Wraps a tensor map as {@link ModelWeights} (no checks; see {@link checkTensorShapes}). */
export function weightsFromTensors(
  dir: string,
  config: ModelConfig,
  tensors: ReadonlyMap<string, Tensor>,
): ModelWeights {
  return {
    dir,
    config,
    get(name: string): Tensor {
      const tensor = tensors.get(name);
      if (tensor === undefined) {
        throw new ModelError(`${dir}: tensor "${name}" is missing from the checkpoint`);
      }
      return tensor;
    },
    has(name: string): boolean {
      return tensors.has(name);
    },
  };
}

function sameShape(actual: readonly number[], expected: readonly number[]): boolean {
  return actual.length === expected.length && actual.every((dim, i) => dim === expected[i]);
}
