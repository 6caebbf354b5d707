/**
 * Checks an evaluation's answers against Hugging Face transformers: rebuilds the prompts of the
 * run that an `eval --out DIR` checkpoint holds (its header names the model and the suite), has
 * `tools/hf_answers.py` answer them greedily in float32 with no compression, and compares each
 * answer with the checkpoint's answer of one policy (default `full`, query-aware). So the
 * uncompressed rows of a published table are shown to be the model's own answers, not our
 * runtime's, at every length the run covers.
 *
 * usage: deno run -A tools/compare_answers.ts --out DIR [--policy full] [--lengths 8k]
 *          [--limit N]
 *
 * Prints one line per prompt (cell, expected, ours, transformers, whether transformers' answer
 * scores, equal) and the counts; exits 1 when an answer differs. A prompt the checkpoint has no
 * answer for yet (a run still going) is answered by transformers alone and marked `pending`.
 * `KVPOLICY_PYTHON` names the Python with torch, transformers and gguf (default `python3`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { chatFrame } from "../src/eval/chatPrompt.ts";
import { parseLengths } from "../src/eval/gridSpec.ts";
import { stopIdsOf } from "../src/eval/runner.ts";
import type { GenerationSample } from "../src/eval/sample.ts";
import type { SampleOutcome } from "../src/eval/results.ts";
import { buildSuiteSamples } from "../src/eval/samples.ts";
import { scoreAnswer } from "../src/eval/scoring.ts";
import type { EvalSuite } from "../src/eval/suite.ts";
import { chatSpecialTokens, endOfTurnIds } from "../src/model/chatTemplate.ts";
import { readGgufHeader } from "../src/model/ggufFile.ts";
import { tokenizerFromGguf } from "../src/model/ggufTokenizer.ts";
import { locateModel, readModelHeader } from "../src/model/openModel.ts";
import { loadTokenizer, type TextTokenizer } from "../src/model/tokenizer.ts";

const SCRIPT = new URL("./hf_answers.py", import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    policy: { type: "string", default: "full" },
    lengths: { type: "string" },
    limit: { type: "string" },
  },
});
if (!values.out) {
  throw new Error("--out DIR (an eval run's folder with outcomes.jsonl) is required");
}
const lines = (await Deno.readTextFile(join(values.out, "outcomes.jsonl"))).trim().split("\n");
const header = JSON.parse(lines[0]) as { model: string; suite: EvalSuite };
const outcomes = lines.slice(1).flatMap((line) => {
  try {
    return [(JSON.parse(line) as { outcome: SampleOutcome }).outcome];
  } catch {
    return []; // a line cut short by an interruption
  }
});

const location = await locateModel(header.model);
const modelHeader = await readModelHeader(location);
const tokenizer: TextTokenizer | null = location.format === "hf"
  ? await loadTokenizer(location.path)
  : tokenizerFromGguf((await readGgufHeader(location.path)).metadata, location.path);
if (!tokenizer) throw new Error(`${header.model}: no tokenizer`);
const chat = header.suite.chat ? modelHeader.chat : null;
if (header.suite.chat && !chat) throw new Error(`${header.model}: the suite is chat, no template`);
const frame = chat ? chatFrame(chat, chatSpecialTokens(modelHeader.config, tokenizer)) : null;
const stopIds = [
  ...new Set([
    ...stopIdsOf(tokenizer),
    ...(chat ? endOfTurnIds(chat, tokenizer, modelHeader.config.eosTokenIds) : []),
  ]),
];

const lengths = values.lengths ? new Set(parseLengths(values.lengths)) : null;
let samples = buildSuiteSamples(tokenizer, header.suite, frame).filter((
  s,
): s is GenerationSample => s.kind === "generate" && (!lengths || lengths.has(s.length)));
const answerOf = (s: GenerationSample) =>
  outcomes.find((o) =>
    o.policy === values.policy && o.protocol === "aware" && o.cell.task === s.task &&
    o.cell.length === s.length && o.cell.depth === s.depth && o.cell.index === s.index
  )?.output;
if (values.limit) samples = samples.slice(0, Number(values.limit));

const dir = await Deno.makeTempDir({ prefix: "kvpolicy-answers-" });
let failed = false;
try {
  const cases = samples.map((s) => ({
    ids: s.promptIds,
    max_new_tokens: s.maxNewTokens,
    stop_ids: stopIds,
  }));
  await Deno.writeTextFile(`${dir}/cases.json`, JSON.stringify(cases));
  const python = Deno.env.get("KVPOLICY_PYTHON") ?? "python3";
  const run = await new Deno.Command(python, {
    args: [SCRIPT, location.path, `${dir}/cases.json`, `${dir}/answers.jsonl`],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!run.success) throw new Error("the transformers reference failed");
  const answers = (await Deno.readTextFile(`${dir}/answers.jsonl`)).trim().split("\n")
    .map((line) => JSON.parse(line) as { ids: number[] });
  let agree = 0, pending = 0, correct = 0;
  for (const [i, s] of samples.entries()) {
    const theirs = tokenizer.decode(answers[i].ids, { skipSpecialTokens: true });
    const score = scoreAnswer(s.scoring, theirs, s.references);
    correct += score;
    const ours = answerOf(s);
    const same = ours === theirs;
    if (ours === undefined) pending++;
    else if (same) agree++;
    else failed = true;
    console.log(
      [
        s.task,
        s.length,
        s.depth ?? "-",
        s.index,
        JSON.stringify(s.expected),
        JSON.stringify(ours ?? null),
        JSON.stringify(theirs),
        score.toFixed(2),
        ours === undefined ? "pending" : same ? "equal" : "DIFFERENT",
      ].join("\t"),
    );
  }
  console.log(
    `${agree} of ${samples.length - pending} answers of '${values.policy}' equal transformers'` +
      (pending ? ` (${pending} prompts not answered in the checkpoint yet)` : "") +
      `; transformers' answers score ${correct} of ${samples.length}`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (failed) Deno.exit(1);
