/**
 * Checks a GGUF model on the GPU runtime against Hugging Face transformers loading the same file
 * (`tests/model/hf_gguf_reference.py`, float32): for each prompt, the greedy ids of both through
 * their decode loops, and every step's logits teacher-forced along the reference's ids.
 *
 * usage: deno run -A tools/compare_transformers.ts --model FILE.gguf [--steps 64]
 *          [--prompt TEXT]... [--prompt-file F]... [--ids 1,2,3]...
 *
 * `--ids` gives a prompt as token ids (a model without a tokenizer, e.g. the test fixtures).
 *
 * Prints, per prompt, its length, the greedy ids that agree (up to the first step whose
 * reference top-2 margin is within float noise) and the largest |Δlogit|; exits 1 when the ids
 * differ before that step or a logit differs by more than `--tolerance` (default 2e-3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../src/runtime/engine.ts";

const SCRIPT = new URL("../tests/model/hf_gguf_reference.py", import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    steps: { type: "string", default: "64" },
    tolerance: { type: "string", default: "2e-3" },
    prompt: { type: "string", multiple: true, default: [] },
    "prompt-file": { type: "string", multiple: true, default: [] },
    ids: { type: "string", multiple: true, default: [] },
  },
});
if (!values.model) throw new Error("--model FILE.gguf is required");
const steps = Number(values.steps), tolerance = Number(values.tolerance);
const texts = [
  ...values.prompt,
  ...values["prompt-file"].map((f) => Deno.readTextFileSync(f)),
];
const idLists = values.ids.map((list) => list.split(",").map((x) => Number(x.trim())));
if (idLists.some((ids) => ids.length === 0 || !ids.every((x) => Number.isInteger(x) && x >= 0))) {
  throw new Error("--ids takes a comma-separated list of token ids");
}
if (texts.length === 0 && idLists.length === 0) texts.push("The capital of France is");

const engine = await Engine.open(values.model);
const dir = await Deno.makeTempDir({ prefix: "kvpolicy-compare-" });
let failed = false;
try {
  if (texts.length > 0 && !engine.tokenizer) {
    throw new Error("this model has no tokenizer: use --ids");
  }
  const prompts = [...texts.map((text) => engine.tokenizer!.encode(text)), ...idLists];
  const cases = prompts.map((ids, i) => ({ name: `p${i}`, ids, steps }));
  await Deno.writeTextFile(`${dir}/cases.json`, JSON.stringify(cases));
  const python = Deno.env.get("KVPOLICY_PYTHON") ?? "python3";
  const reference = new Deno.Command(python, {
    args: [SCRIPT, values.model, `${dir}/cases.json`, dir],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const ours = [];
  for (const c of cases) {
    ours.push(
      (await engine.generate({ promptIds: c.ids, maxNewTokens: steps, stopIds: [] })).tokens,
    );
  }
  if (!(await reference).success) throw new Error("the transformers reference failed");
  const vocab = engine.config.vocabSize;
  for (const [i, c] of cases.entries()) {
    const ref = JSON.parse(await Deno.readTextFile(`${dir}/${c.name}.json`));
    const refLogits = new Float32Array((await Deno.readFile(`${dir}/${c.name}.f32`)).buffer);
    const rows = (await engine.promptLogits([...c.ids, ...ref.greedy_ids.slice(0, steps - 1)]))
      .slice(c.ids.length - 1);
    let worst = 0;
    rows.forEach((row, s) => {
      const want = refLogits.subarray(s * vocab, (s + 1) * vocab);
      for (let j = 0; j < vocab; j++) worst = Math.max(worst, Math.abs(row[j] - want[j]));
    });
    const close = (ref.margins as number[]).findIndex((m) => m < 2 * tolerance);
    const upTo = close < 0 ? steps : close;
    const agree = ours[i].findIndex((id, s) => id !== ref.greedy_ids[s]);
    const same = agree < 0 ? steps : agree;
    const ok = same >= upTo && worst <= tolerance;
    failed ||= !ok;
    console.log(
      `${c.name}: ${c.ids.length}-token prompt, ${same}/${steps} greedy ids equal ` +
        `(reference unambiguous for ${upTo}), max |Δlogit| ${worst.toExponential(2)} ` +
        (ok ? "ok" : "MISMATCH"),
    );
  }
} finally {
  engine.close();
  await Deno.remove(dir, { recursive: true });
}
if (failed) Deno.exit(1);
