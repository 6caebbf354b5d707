/**
 * Prompt inputs of `run`: text, a UTF-8 file, or explicit token ids; and the default model.
 *
 * @module
 */

import { PROMPT_FILE_LIMIT, readBoundedFileSync } from "../model/readBounded.ts";
import { UserError } from "./errors.ts";

/** The needle-demo model: retrieves by copying, heads set by construction. */
export const DEMO_MODEL_DIR: string =
  new URL("../../models/planted-needle", import.meta.url).pathname;

/** The shipped default model folder. */
export const DEFAULT_MODEL_DIR: string =
  new URL("../../models/tiny-needle", import.meta.url).pathname;

/**
 * The prompt text from `--prompt` or `--prompt-file` (a regular file of at most 64 MiB, valid
 * UTF-8 and not empty: an empty prompt would silently generate from BOS alone).
 */
export function readPromptText(prompt: string | undefined, file: string | undefined): string {
  if (prompt !== undefined) {
    if (prompt === "") throw new UserError("--prompt is empty: give some text");
    return prompt;
  }
  let bytes: Uint8Array;
  try {
    bytes = readBoundedFileSync(file!, PROMPT_FILE_LIMIT, "a prompt file");
  } catch (e) {
    const message = e instanceof Deno.errors.NotFound ? `${file}: not found` : (e as Error).message;
    throw new UserError(`--prompt-file: ${message}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UserError(`--prompt-file: '${file}' is not valid UTF-8`);
  }
  if (text === "") throw new UserError(`--prompt-file: '${file}' is empty`);
  return text;
}

/** Parses `--prompt-ids 1,2,3`, checking every id against the vocabulary. */
export function readPromptIds(text: string, vocabSize: number): number[] {
  const parts = text.split(",").map((s) => s.trim());
  const ids: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) {
      throw new UserError(`--prompt-ids: '${p}' is not a token id (expected 1,2,3)`);
    }
    const id = Number(p);
    if (id >= vocabSize) {
      throw new UserError(
        `--prompt-ids: token id ${id} is outside the vocabulary (0..${vocabSize - 1})`,
      );
    }
    ids.push(id);
  }
  return ids;
}
