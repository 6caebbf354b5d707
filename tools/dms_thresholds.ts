/**
 * DMS thresholds for a model: a DMS threshold is on its scorer's scale, and where KeyDiff's scores
 * lie depends on the model (half of SmolLM2-135M's lie between −0.77 and −0.68 at 4K, so round
 * thresholds such as −0.2 keep nothing beyond the window). This builds a RULER single-key prompt
 * of the given length with a calibration seed (not the evaluation's, 1234), has
 * `tools/keydiff_thresholds.py` score it with Hugging Face transformers, and prints the thresholds
 * of `keydiff(k=100%) + dms(threshold=t, window=W)` that keep each fraction of the cache on it.
 *
 * usage: deno run -A tools/dms_thresholds.ts --model M [--length 4k] [--chat] [--seed 4321]
 *          [--keep 0.75,0.5,0.25,0.125] [--window 128]
 *
 * `KVPOLICY_PYTHON` names the Python with torch, transformers and gguf (default `python3`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { chatFrame } from "../src/eval/chatPrompt.ts";
import { parseLengths } from "../src/eval/gridSpec.ts";
import { buildTaskSamples } from "../src/eval/samples.ts";
import { defaultSuite, modelKindOf } from "../src/eval/suite.ts";
import { chatSpecialTokens } from "../src/model/chatTemplate.ts";
import { readGgufHeader } from "../src/model/ggufFile.ts";
import { tokenizerFromGguf } from "../src/model/ggufTokenizer.ts";
import { locateModel, readModelHeader } from "../src/model/openModel.ts";
import { loadTokenizer } from "../src/model/tokenizer.ts";

const SCRIPT = new URL("./keydiff_thresholds.py", import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    length: { type: "string", default: "4k" },
    chat: { type: "boolean", default: false },
    seed: { type: "string", default: "4321" },
    keep: { type: "string", default: "0.75,0.5,0.25,0.125" },
    window: { type: "string", default: "128" },
  },
});
if (!values.model) throw new Error("--model (a .gguf file or a model folder) is required");
const location = await locateModel(values.model);
const header = await readModelHeader(location);
const tokenizer = location.format === "hf"
  ? await loadTokenizer(location.path)
  : tokenizerFromGguf((await readGgufHeader(location.path)).metadata, location.path);
if (!tokenizer) throw new Error(`${values.model}: no tokenizer`);
if (values.chat && !header.chat) throw new Error(`${values.model}: no chat template`);

const suite = {
  ...defaultSuite(modelKindOf(location.path)),
  seed: Number(values.seed),
  samples: 1,
  lengths: parseLengths(values.length),
  tasks: ["single_key" as const],
  chat: values.chat,
};
const frame = header.chat && values.chat
  ? chatFrame(header.chat, chatSpecialTokens(header.config, tokenizer))
  : null;
const [sample] = buildTaskSamples(tokenizer, suite, "single_key", frame);
if (sample.kind !== "generate") throw new Error("unexpected sample kind");

const dir = await Deno.makeTempDir({ prefix: "kvpolicy-dms-" });
try {
  const keep = values.keep.split(",").map(Number);
  await Deno.writeTextFile(
    `${dir}/prompt.json`,
    JSON.stringify({ ids: sample.promptIds, window: Number(values.window), keep }),
  );
  const python = Deno.env.get("KVPOLICY_PYTHON") ?? "python3";
  const run = await new Deno.Command(python, {
    args: [SCRIPT, location.path, `${dir}/prompt.json`],
    stderr: "inherit",
  }).output();
  if (!run.success) throw new Error("the transformers scoring failed");
  const result = JSON.parse(new TextDecoder().decode(run.stdout));
  console.log(
    `${result.tokens} tokens (seed ${values.seed}); KeyDiff score quantiles of the ` +
      `entries outside the window: ${JSON.stringify(result.quantiles)}`,
  );
  for (const t of result.thresholds) {
    console.log(
      `keep ${t.keep}: dms(threshold=${t.threshold}, window=${values.window}) keeps ${t.kept}`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
