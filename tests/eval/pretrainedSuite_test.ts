/**
 * The suite for real pretrained models (RULER's wording) and chat prompts: which models get it,
 * the exact prompt text around the haystack, plain and in a ChatML chat frame, and what the
 * runner asks of the engine for chat suites. The SmolLM2 GGUF's own template and tokenizer are
 * checked when it is present (read from its header, no weights).
 */
import assert from "node:assert/strict";
import { UserError } from "../../src/cli/errors.ts";
import { chatFrame, promptFrame } from "../../src/eval/chatPrompt.ts";
import type { GenerationSample } from "../../src/eval/sample.ts";
import { buildTaskSamples } from "../../src/eval/samples.ts";
import { runEval } from "../../src/eval/runner.ts";
import { defaultSuite, type EvalSuite, modelKindOf, parseSuiteYaml } from "../../src/eval/suite.ts";
import { PRETRAINED_TEMPLATES, TINY_NEEDLE_TEMPLATES } from "../../src/eval/templates.ts";
import { parseChatTemplate } from "../../src/model/chatTemplate.ts";
import { ModelError } from "../../src/model/errors.ts";
import { readGgufHeader } from "../../src/model/ggufFile.ts";
import { tokenizerFromGguf } from "../../src/model/ggufTokenizer.ts";
import { locateModel, readModelHeader } from "../../src/model/openModel.ts";
import { fakePolicies, RecencyFakeEngine, tinyNeedleTokenizer } from "./_fakeEngine.ts";
import { SMOLLM2_GGUF, smollm2Missing } from "../runtime/_smollm2.ts";

const tokenizer = await tinyNeedleTokenizer();

/** SmolLM2-Instruct's ChatML template (as its GGUF's tokenizer.chat_template holds it). */
const CHATML =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face" +
  "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}" +
  "{{ '<|im_start|>assistant\\n' }}{% endif %}";
const SYSTEM_TURN =
  "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
const CHATML_FRAME = {
  beforeUser: `${SYSTEM_TURN}<|im_start|>user\n`,
  afterUser: "<|im_end|>\n<|im_start|>assistant\n",
};
const PREAMBLE = "Some special magic numbers are hidden within the following text. " +
  "Make sure to memorize it. I will quiz you about the numbers afterwards.\n";

function pretrainedSuite(changes: Partial<EvalSuite> = {}): EvalSuite {
  return { ...defaultSuite("pretrained"), lengths: [300], depths: [50], samples: 1, ...changes };
}

function needleSample(suite: EvalSuite, frame = suite.chat ? CHATML_FRAME : null) {
  const [sample] = buildTaskSamples(tokenizer, suite, "needle", frame);
  return sample as GenerationSample;
}

Deno.test("pretrained suite: GGUF files get it; the shipped toy models keep theirs", () => {
  assert.equal(modelKindOf("/m/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), "pretrained");
  assert.equal(modelKindOf("models/x.GGUF"), "pretrained");
  assert.equal(modelKindOf("models/planted-needle"), "planted-needle");
  assert.equal(modelKindOf("models/tiny-needle"), "tiny-needle");
  const suite = defaultSuite("pretrained");
  assert.deepEqual(suite.templates, PRETRAINED_TEMPLATES);
  assert.equal(suite.chat, false);
  assert.equal(defaultSuite("tiny-needle").chat, false);
  assert.equal(TINY_NEEDLE_TEMPLATES.preamble, "", "toy models' prompts start with the haystack");
});

Deno.test("pretrained suite: RULER's needle question and answer prefix, exactly", () => {
  const t = PRETRAINED_TEMPLATES;
  assert.equal(t.needle, "The special magic number for {key} is {value}.");
  assert.equal(
    t.question,
    "\nWhat is the special magic number for {key} mentioned in the provided text?",
  );
  assert.equal(
    t.answerPrefix,
    " The special magic number for {key} mentioned in the provided text is",
  );
  assert.equal(t.preamble, PREAMBLE);
});

Deno.test("suite YAML: base: pretrained and chat: true; chat must be a boolean", () => {
  const suite = parseSuiteYaml(
    "base: pretrained\nchat: true\n",
    "s.yaml",
    defaultSuite("tiny-needle"),
  );
  assert.deepEqual(suite.templates, PRETRAINED_TEMPLATES);
  assert.equal(suite.chat, true);
  const custom = parseSuiteYaml('templates: { preamble: "Read this.\\n" }', "s.yaml", suite);
  assert.equal(custom.templates.preamble, "Read this.\n");
  for (
    const [text, message] of [["chat: yes please", /'chat' must be true or false/], [
      "base: smollm",
      /'base' must be tiny-needle, planted-needle, pretrained/,
    ], ["templates: { preamble: '{key}' }", /templates\.preamble uses \{key\}/]] as const
  ) {
    assert.throws(() => parseSuiteYaml(text, "bad.yaml", suite), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("chat frame: the text ChatML writes around one user message", () => {
  const chat = parseChatTemplate(CHATML, "test: chat_template");
  assert.deepEqual(chatFrame(chat), CHATML_FRAME);
  const ignoresUser = parseChatTemplate("{{ bos_token }}Hello", "test: chat_template");
  assert.throws(() => chatFrame(ignoresUser, { bosToken: "<s>" }), ModelError);
});

Deno.test("prompt frame: plain, then with the chat frame (answer prefix opens the assistant turn)", () => {
  const parts = { preamble: "Read.\n", question: "\nWhat is x?", answerPrefix: " x is" };
  assert.deepEqual(promptFrame(null, parts), { prefix: "Read.\n", suffix: "\nWhat is x? x is" });
  assert.deepEqual(promptFrame(CHATML_FRAME, parts), {
    prefix: `${SYSTEM_TURN}<|im_start|>user\nRead.\n`,
    suffix: "\nWhat is x?<|im_end|>\n<|im_start|>assistant\nx is",
  });
});

Deno.test("needle sample, plain: preamble, haystack, RULER's question and answer prefix", () => {
  const s = needleSample(pretrainedSuite());
  const key = /for ([a-z]+-[a-z]+) is \d{7}\./.exec(s.promptText)![1];
  assert.ok(s.promptText.startsWith(PREAMBLE), s.promptText.slice(0, 200));
  assert.ok(s.promptText.includes(`The special magic number for ${key} is ${s.references[0]}.`));
  assert.ok(
    s.promptText.endsWith(
      `.\nWhat is the special magic number for ${key} mentioned in the provided text? ` +
        `The special magic number for ${key} mentioned in the provided text is`,
    ),
    s.promptText.slice(-200),
  );
  assert.equal(s.expected, ` ${s.references[0]}.`);
  assert.deepEqual(s.promptIds, tokenizer.encode(s.promptText));
  assert.ok(s.promptIds.length + s.maxNewTokens <= 300);
});

Deno.test("needle sample, chat: the user's message holds the haystack, the answer follows the turn", () => {
  const plain = needleSample(pretrainedSuite());
  const s = needleSample(pretrainedSuite({ chat: true }));
  const key = /for ([a-z]+-[a-z]+) is \d{7}\./.exec(s.promptText)![1];
  assert.ok(s.promptText.startsWith(`${SYSTEM_TURN}<|im_start|>user\n${PREAMBLE}`));
  assert.ok(
    s.promptText.endsWith(
      `.\nWhat is the special magic number for ${key} mentioned in the provided text?` +
        `<|im_end|>\n<|im_start|>assistant\n` +
        `The special magic number for ${key} mentioned in the provided text is`,
    ),
    s.promptText.slice(-200),
  );
  assert.equal(s.expected, ` ${s.references[0]}.`);
  // The template's text is tokenized as is: no BOS is added in front of it.
  assert.deepEqual(s.promptIds, tokenizer.encode(s.promptText, { addSpecialTokens: false }));
  assert.ok(s.promptIds.length + s.maxNewTokens <= 300);
  assert.ok(s.promptIds.length > 250, "the haystack fills the rest of the cell");
  assert.equal(plain.references[0], s.references[0], "same seed, same needle");
  assert.throws(() => buildTaskSamples(tokenizer, pretrainedSuite({ chat: true }), "needle"));
});

Deno.test("variable tracking, pretrained: RULER's instruction before the haystack", () => {
  const [s] = buildTaskSamples(tokenizer, pretrainedSuite(), "variable_tracking");
  const sample = s as GenerationSample;
  assert.ok(sample.promptText.startsWith(PRETRAINED_TEMPLATES.variablePreamble));
  assert.match(
    sample.promptText,
    /\nQuestion: Find all variables that are assigned the value \d{5} in the text above\. Answer: According to the chain\(s\) of variable assignment in the text above, the variables assigned the value \d{5} are:$/,
  );
});

Deno.test("runner: chat suites stop at the engine's end-of-turn ids; no chat template is a user error", async () => {
  const suite = { ...pretrainedSuite({ chat: true }), tasks: ["needle" as const] };
  const plain = new RecencyFakeEngine(tokenizer);
  await assert.rejects(
    runEval({ engine: plain, policies: fakePolicies(), suite }),
    (e: Error) =>
      e instanceof UserError && /--chat: fake-recency has no chat template/.test(e.message),
  );
  const stops: number[][] = [];
  const chatty = Object.assign(new RecencyFakeEngine(tokenizer), {
    chat: { frame: CHATML_FRAME, stopIds: [4242] },
  });
  const generate = chatty.generate.bind(chatty);
  chatty.generate = (req) => {
    stops.push(req.stopIds ?? []);
    return generate(req);
  };
  await runEval({ engine: chatty, policies: fakePolicies(), suite });
  assert.equal(stops.length, 2);
  for (const ids of stops) assert.ok(ids.includes(4242), JSON.stringify(ids));
  const prompt = tokenizer.decode(chatty.prompts[0]);
  assert.ok(prompt.startsWith(SYSTEM_TURN), prompt.slice(0, 120));
});

Deno.test({
  name: "SmolLM2 GGUF: its header gives the context, the ChatML frame, and prompts as tokens",
  ignore: smollm2Missing(),
  async fn() {
    const header = await readModelHeader(await locateModel(SMOLLM2_GGUF));
    assert.equal(header.config.maxPositions, 8192);
    assert.match(header.configSource, /\.gguf \(GGUF metadata\)$/);
    assert.ok(header.chat);
    assert.deepEqual(chatFrame(header.chat), CHATML_FRAME);
    const gguf = await readGgufHeader(SMOLLM2_GGUF);
    const smol = tokenizerFromGguf(gguf.metadata, SMOLLM2_GGUF);
    const suite = pretrainedSuite({ chat: true });
    const [s] = buildTaskSamples(smol, suite, "needle", CHATML_FRAME) as GenerationSample[];
    const imStart = smol.tokenId("<|im_start|>")!;
    const imEnd = smol.tokenId("<|im_end|>")!;
    assert.equal(s.promptIds[0], imStart, "the system turn's opening, no BOS in front");
    assert.equal(s.promptIds.filter((id) => id === imStart).length, 3);
    assert.equal(s.promptIds.filter((id) => id === imEnd).length, 2);
    assert.ok(s.promptIds.length + s.maxNewTokens <= 300);
    assert.ok(s.promptIds.length > 250);
  },
});
