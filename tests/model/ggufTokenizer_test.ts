/**
 * The GGUF tokenizer (`src/model/ggufTokenizer.ts`) against independent references: cases
 * worked by hand from llama.cpp's rules (synthetic vocabularies and the real SmolLM2 one), Hugging
 * Face's Rust `tokenizers` built from the GGUF's own vocabulary and merges, and a Python
 * re-implementation of llama.cpp's SentencePiece merge loop (`gguf_tokenizer_reference.py`).
 * Metadata checks need neither Python nor the model file.
 */
import assert from "node:assert/strict";
import { ModelError } from "../../src/model/errors.ts";
import { ggufSpecialTokens, tokenizerFromGguf } from "../../src/model/ggufTokenizer.ts";
import type { GgufMetadata, GgufValue } from "../../src/model/ggufTypes.ts";
import { pythonMissing, runPython } from "../_python.ts";
import { SMOLLM2_GGUF, smollm2Missing } from "../runtime/_smollm2.ts";

const REFERENCE = new URL("./gguf_tokenizer_reference.py", import.meta.url).pathname;
const FILE = "tiny.gguf";

/** Varied strings for the reference comparisons. */
const STRINGS = [
  "The number is 9792168.",
  "Hello world",
  "x = 1234567890 + 3.14159 - 42",
  "2024-12-04 at 09:30, call 555-0199",
  "   leading and trailing spaces   ",
  "two  spaces,   three, \t tab and\ttab",
  "line one\nline two\r\nwindows\n\n\nthree newlines",
  "don't, I'm, we'll, they've, she'd, it's, you're",
  "DON'T SHOUT, It'S fine",
  "Punctuation!?... (brackets) [x] {y} <z> #$%&*@^_`|~",
  "café naïve résumé Ærøskøbing São Paulo",
  "日本語のテキストと中文字符",
  "emoji 🎉🚀 and flags 🇫🇷, family 👨‍👩‍👧",
  "x² + ½ = ٣ and ৩ digits",
  "<|im_start|>user\nHi<|im_end|>",
  "<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>assistant\n",
  "text<|endoftext|>more text",
  "def f(x):\n    return x**2  # square\n",
  '{"key": [1, 22, 333, 4444], "ok": true}',
  "http://example.com/path?q=1&r=two",
  "a",
  " ",
  "\n",
  "1",
  "99999999999999999999",
  "mixed123abc456def",
  "Ω≈ç√∫˜µ≤≥÷ — “quotes” ‘single’ …",
  "  \n  \t  ",
  "Привет, мир! Γειά σου Κόσμε",
  "tabs\t\tand trailing tab\t",
];

/** GPT-2's byte-to-character table (its `bytes_to_unicode`). */
function byteChars(): string[] {
  const direct = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(direct(b) ? b : 256 + extra++));
}

/** A tiny byte-level vocabulary: 256 bytes, specials, and a few merged pieces. */
function tinyByteLevel(pre: string, extra: Record<string, GgufValue> = {}): Map<string, GgufValue> {
  const pieces = ["12", "123", "1234", "hi", "Ġhi", "ab"]; // "ab" has no merge
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"];
  const tokens = [...byteChars(), ...specials, ...pieces];
  const types = tokens.map((t) => t === "<tool>" ? 4 : specials.includes(t) ? 3 : 1);
  return new Map<string, GgufValue>(Object.entries({
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": pre,
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.merges": ["1 2", "12 3", "123 4", "h i", "Ġ hi"],
    "tokenizer.ggml.bos_token_id": 256,
    "tokenizer.ggml.eos_token_id": 258,
    ...extra,
  }));
}

/** The ids of token texts, looked up in the metadata itself (not through the tokenizer). */
function idsOf(meta: GgufMetadata, texts: string[]): number[] {
  const tokens = meta.get("tokenizer.ggml.tokens") as string[];
  return texts.map((t) => {
    const id = tokens.indexOf(t);
    assert.ok(id >= 0, `${JSON.stringify(t)} is in the vocabulary`);
    return id;
  });
}

Deno.test("gguf tokenizer: llama.cpp's pre-tokenizers split digits as its regexes say", () => {
  const cases: [string, string, string[]][] = [
    ["smollm", "1234", ["1", "2", "3", "4"]], // \p{N}: every digit alone
    ["qwen2", "1234", ["1", "2", "3", "4"]], // \p{N} inside the regex
    ["gpt-2", "1234", ["1234"]], // ?\p{N}+: the whole number, then merges
    ["llama-bpe", "1234", ["123", "4"]], // \p{N}{1,3}
    ["default", "1234", ["123", "4"]], // \p{N}+ then [0-9][0-9][0-9]
    ["falcon", "1234", ["123", "4"]],
    ["gpt-2", " hi 12", ["Ġhi", "Ġ", "12"]], // " 12" is one pre-token; no "Ġ 12" merge
    ["smollm", " hi 12", ["Ġhi", "Ġ", "1", "2"]],
    ["gpt-2", "ab", ["a", "b"]], // no merge a+b
    ["llama-bpe", "ab", ["ab"]], // ignore_merges: a pre-token in the vocabulary stays whole
  ];
  for (const [pre, text, want] of cases) {
    const meta = tinyByteLevel(pre);
    const tok = tokenizerFromGguf(meta, FILE);
    const addBos = ggufSpecialTokens(meta, FILE).addBos;
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), idsOf(meta, want), pre);
    assert.equal(tok.encode(text).length, want.length + (addBos ? 1 : 0), `${pre} BOS`);
  }
});

Deno.test("gguf tokenizer: control and user-defined tokens, BOS and EOS facts", () => {
  const meta = tinyByteLevel("gpt-2");
  const tok = tokenizerFromGguf(meta, FILE);
  const [endoftext, imStart, imEnd, tool, hi] = idsOf(meta, [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool>",
    "hi",
  ]);
  const ids = tok.encode("<|im_start|>hi<tool><|im_end|>");
  assert.deepEqual(ids, [imStart, hi, tool, imEnd]);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "hi<tool>");
  assert.equal(tok.decode(ids), "<|im_start|>hi<tool><|im_end|>");
  assert.deepEqual(ggufSpecialTokens(meta, FILE), {
    bosId: endoftext,
    eosIds: [imEnd, endoftext], // eos, then llama.cpp's end-of-generation texts
    eotId: imEnd,
    addBos: false, // llama.cpp's default for gpt2 vocabularies
    addEos: false,
    chatTemplate: undefined,
  });
  // llama-bpe defaults to BOS (llama.cpp); add_bos_token overrides either way.
  const llama3 = tinyByteLevel("llama-bpe");
  assert.equal(ggufSpecialTokens(llama3, FILE).addBos, true);
  assert.deepEqual(tokenizerFromGguf(llama3, FILE).encode("hi"), [endoftext, hi]);
  const on = tinyByteLevel("gpt-2", { "tokenizer.ggml.add_bos_token": true });
  assert.deepEqual(tokenizerFromGguf(on, FILE).encode("hi"), [endoftext, hi]);
  const both = tinyByteLevel("gpt-2", { "tokenizer.ggml.add_eos_token": true });
  assert.deepEqual(tokenizerFromGguf(both, FILE).encode("hi"), [hi, imEnd]);
});

Deno.test("gguf tokenizer: bad metadata gives a ModelError naming the file and the key", () => {
  const huge = new Array<string>((1 << 22) + 1).fill("a");
  const bad: [string, Record<string, GgufValue | undefined>][] = [
    ["tokenizer.ggml.model", { "tokenizer.ggml.model": undefined }],
    ["tokenizer.ggml.model", { "tokenizer.ggml.model": 7 }],
    ["tokenizer.ggml.model", { "tokenizer.ggml.model": "bert" }],
    ["tokenizer.ggml.pre", { "tokenizer.ggml.pre": "my-own-pre" }],
    ["tokenizer.ggml.pre", { "tokenizer.ggml.pre": ["smollm"] }],
    ["tokenizer.ggml.tokens", { "tokenizer.ggml.tokens": undefined }],
    ["tokenizer.ggml.tokens", { "tokenizer.ggml.tokens": "abc" }],
    ["tokenizer.ggml.tokens", { "tokenizer.ggml.tokens": ["a", 2, "c"] }],
    ["tokenizer.ggml.tokens", { "tokenizer.ggml.tokens": huge }],
    ["tokenizer.ggml.tokens", { "tokenizer.ggml.tokens": [] }],
    ["tokenizer.ggml.merges", { "tokenizer.ggml.merges": undefined }],
    ["tokenizer.ggml.merges", { "tokenizer.ggml.merges": ["1 2", "12"] }],
    ["tokenizer.ggml.merges", { "tokenizer.ggml.merges": ["1 2 3"] }],
    ["tokenizer.ggml.merges", { "tokenizer.ggml.merges": [" 12"] }],
    ["tokenizer.ggml.merges", { "tokenizer.ggml.merges": [5n] }],
    ["tokenizer.ggml.token_type", { "tokenizer.ggml.token_type": [1, 1, 3] }],
    ["tokenizer.ggml.token_type", { "tokenizer.ggml.token_type": new Array(266).fill(1.5) }],
    ["tokenizer.ggml.bos_token_id", { "tokenizer.ggml.bos_token_id": 266 }],
    ["tokenizer.ggml.eos_token_id", { "tokenizer.ggml.eos_token_id": -1 }],
    ["tokenizer.ggml.eos_token_id", { "tokenizer.ggml.eos_token_id": 1n << 40n }],
    ["tokenizer.ggml.eot_token_id", { "tokenizer.ggml.eot_token_id": "2" }],
    ["tokenizer.ggml.unknown_token_id", { "tokenizer.ggml.unknown_token_id": 1e9 }],
    ["tokenizer.ggml.add_bos_token", { "tokenizer.ggml.add_bos_token": 1 }],
    ["tokenizer.ggml.add_bos_token", {
      "tokenizer.ggml.add_bos_token": true,
      "tokenizer.ggml.bos_token_id": undefined,
    }],
    ["tokenizer.chat_template", { "tokenizer.chat_template": ["{{x}}"] }],
    ["tokenizer.ggml.scores", { "tokenizer.ggml.model": "llama" }],
    ["tokenizer.ggml.scores", {
      "tokenizer.ggml.model": "llama",
      "tokenizer.ggml.scores": new Array(265).fill(0),
    }],
  ];
  for (const [key, change] of bad) {
    const meta = tinyByteLevel("gpt-2");
    for (const [k, v] of Object.entries(change)) v === undefined ? meta.delete(k) : meta.set(k, v);
    assert.throws(() => tokenizerFromGguf(meta, "/models/x.gguf"), (error: Error) => {
      assert.ok(error instanceof ModelError, `${key}: ${error.name}: ${error.message}`);
      assert.ok(error.message.startsWith("/models/x.gguf: "), error.message);
      assert.ok(error.message.includes(key), `${key} not in: ${error.message}`);
      return true;
    });
  }
  const unknownPre = tinyByteLevel("my-own-pre");
  assert.throws(
    () => ggufSpecialTokens(unknownPre, "m.gguf"),
    /m\.gguf: tokenizer\.ggml\.pre is 'my-own-pre'/,
  );
});

/** A small SentencePiece vocabulary: unk, BOS, EOS, 256 byte tokens, scored pieces. */
function tinySentencePiece(extra: Record<string, GgufValue> = {}): Map<string, GgufValue> {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types = [2, 3, 3];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
    scores.push(0);
  }
  const special: [string, number][] = [["<|user|>", 4], ["<|end|>", 3]];
  for (const [t, type] of special) tokens.push(t), types.push(type), scores.push(0);
  // Pieces in merge order (score = -rank, as sentencepiece's BPE writes them); "ñ" is not one.
  // deno-fmt-ignore
  const pieces = [
    "▁t", "he", "▁the", "or", "▁w", "ld", "▁wor", "▁world", "ll", "▁he", "llo", "▁hello", "bc",
    "in", "▁in", "ñu", "▁▁", "ab", "▁", "t", "h", "e", "o", "r", "w", "l", "d", "b", "c", "i",
    "n", "u", "a", ".", "H",
  ];
  pieces.forEach((p, rank) => (tokens.push(p), types.push(1), scores.push(-rank)));
  return new Map<string, GgufValue>(Object.entries({
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.scores": scores,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.bos_token_id": 1,
    "tokenizer.ggml.eos_token_id": 2,
    ...extra,
  }));
}

Deno.test("gguf tokenizer: llama (SentencePiece) vocabulary, cases worked by hand", () => {
  const meta = tinySentencePiece();
  const tok = tokenizerFromGguf(meta, FILE);
  const enc = (text: string) => tok.encode(text);
  const cases: [string, string[]][] = [
    ["the world", ["<s>", "▁the", "▁world"]], // space prefix, ' ' -> '▁'
    ["hello", ["<s>", "▁hello"]],
    ["abc", ["<s>", "▁", "a", "bc"]], // "bc" outscores "ab": highest score first
    ["ñu", ["<s>", "▁", "ñu"]], // "ñ" is no token but a character that merges
    ["ñ", ["<s>", "▁", "<0xC3>", "<0xB1>"]], // byte fallback
    ["<|user|>the", ["<s>", "<|user|>", "▁the"]], // space prefix after a special token
    [" the", ["<s>", "▁", "▁the"]], // "▁t" (best score) wins over "▁▁"
    ["the</s>", ["<s>", "▁the", "</s>"]],
  ];
  for (const [text, want] of cases) {
    assert.deepEqual(enc(text), idsOf(meta, want), JSON.stringify(text));
    // The prefix space added after a special token stays in the text (as in llama.cpp).
    const back = text.replace("</s>", "").replace("<|user|>", "<|user|> ");
    assert.equal(tok.decode(enc(text), { skipSpecialTokens: true }), back);
  }
  assert.deepEqual(ggufSpecialTokens(meta, FILE), {
    bosId: 1,
    eosIds: [2, idsOf(meta, ["<|end|>"])[0]],
    eotId: idsOf(meta, ["<|end|>"])[0],
    addBos: true, // llama.cpp's default for 'llama' vocabularies
    addEos: false,
    chatTemplate: undefined,
  });
  const noPrefix = tinySentencePiece({
    "tokenizer.ggml.add_space_prefix": false,
    "tokenizer.ggml.add_bos_token": false,
  });
  const plain = tokenizerFromGguf(noPrefix, FILE);
  assert.deepEqual(plain.encode("the world"), idsOf(meta, ["t", "he", "▁world"]));
  assert.equal(plain.decode(plain.encode(" the world ")), " the world ");
});

const SPM_STRINGS = [
  "the world",
  "hello the world",
  "Hello World.",
  "  two leading spaces",
  "trailing space ",
  "abc abcd bcab",
  "ñu ñ ññu",
  "line\nbreak\ttab",
  "emoji 🎉 in the world",
  "<|user|>hello<|end|>the",
  "<s>the</s>",
  "in the inn",
  "",
  "llllllo",
];

Deno.test({
  name: "gguf tokenizer: llama vocabulary matches a re-implementation of llama.cpp's SPM loop",
  ignore: pythonMissing(["heapq"], "the SentencePiece reference"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-ggufspm-" });
    try {
      for (
        const [name, extra] of Object.entries<Record<string, GgufValue>>({
          prefix: {},
          plain: {
            "tokenizer.ggml.add_space_prefix": false,
            "tokenizer.ggml.add_bos_token": false,
          },
        })
      ) {
        const meta = tinySentencePiece(extra);
        await Deno.writeTextFile(
          `${dir}/vocab.json`,
          JSON.stringify({
            tokens: meta.get("tokenizer.ggml.tokens"),
            scores: meta.get("tokenizer.ggml.scores"),
            types: meta.get("tokenizer.ggml.token_type"),
            add_space_prefix: name === "prefix",
            add_bos: name === "prefix",
            bos: 1,
          }),
        );
        await Deno.writeTextFile(`${dir}/strings.json`, JSON.stringify(SPM_STRINGS));
        await runPython(REFERENCE, ["spm", `${dir}/vocab.json`, `${dir}/strings.json`, `${dir}/o`]);
        const want: number[][] = JSON.parse(await Deno.readTextFile(`${dir}/o`)).ids.spm;
        const tok = tokenizerFromGguf(meta, FILE);
        SPM_STRINGS.forEach((s, i) => {
          assert.deepEqual(tok.encode(s), want[i], `${name}: ${JSON.stringify(s)}`);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "gguf tokenizer: SmolLM2's vocabulary, by hand and against Rust tokenizers",
  ignore: smollm2Missing() || pythonMissing(["gguf", "tokenizers"], "the SmolLM2 tokenizer"),
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-ggufbpe-" });
    let reference: { meta: Record<string, GgufValue>; ids: Record<string, number[][]> };
    try {
      await Deno.writeTextFile(`${dir}/strings.json`, JSON.stringify(STRINGS));
      await runPython(REFERENCE, ["bpe", SMOLLM2_GGUF, `${dir}/strings.json`, `${dir}/out.json`]);
      reference = JSON.parse(await Deno.readTextFile(`${dir}/out.json`));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    // The variants really differ, so each comparison below tests its own pre-tokenizer. SmolLM2
    // has no multi-digit tokens, so llama-bpe (digits by 3) and qwen2 (by 1) agree on it; the
    // synthetic vocabulary above tells them apart.
    const variants = Object.entries(reference.ids);
    for (const [i, [a, idsA]] of variants.entries()) {
      for (const [b, idsB] of variants.slice(i + 1)) {
        if (a === "llama-bpe" && b === "qwen2") continue;
        assert.notDeepEqual(idsA, idsB, `reference ${a} and ${b} give the same ids`);
      }
    }
    const meta = new Map(Object.entries(reference.meta));
    assert.equal(meta.get("tokenizer.ggml.pre"), "smollm");
    const tok = tokenizerFromGguf(meta, SMOLLM2_GGUF);

    await t.step("hand-worked cases from llama.cpp's rules", () => {
      const texts = (s: string) => tok.encode(s).map((id) => tok.tokenText(id));
      assert.deepEqual(texts("The number is 9792168."), [
        ..."The Ġnumber Ġis Ġ".split(" "),
        ..."9792168.",
      ]);
      // "½" is \p{N}: a pre-token of its own, so no "Ġ" + "Â" merge (which gpt-2's regex allows).
      assert.deepEqual(texts(" ½"), ["Ġ", "Â½"]);
      const chat = tok.encode("<|im_start|>user\nHi<|im_end|>");
      assert.deepEqual(chat, [1, ...idsOf(meta, ["user", "Ċ", "Hi"]), 2]);
      assert.equal(tok.decode(chat, { skipSpecialTokens: true }), "user\nHi");
      assert.deepEqual(texts("a  b"), ["a", "Ġ", "Ġb"]); // \s+(?!\S) leaves the last space
      assert.deepEqual(texts("x\n\ny"), ["x", "Ċ", "Ċ", "y"]);
      assert.deepEqual(texts("don't"), ["don", "'t"]);
      for (const s of ["🎉", "café", "日本語", "\t\t"]) {
        assert.equal(tok.decode(tok.encode(s)), s);
      }
      assert.deepEqual(ggufSpecialTokens(meta, SMOLLM2_GGUF), {
        bosId: 1,
        eosIds: [2, 0], // <|im_end|>, then <|endoftext|> by text
        eotId: 2,
        addBos: false,
        addEos: false,
        chatTemplate: meta.get("tokenizer.chat_template"),
      });
      assert.match(ggufSpecialTokens(meta, SMOLLM2_GGUF).chatTemplate!, /<\|im_start\|>/);
    });

    await t.step("smollm: ids equal Rust tokenizers' and decode back", () => {
      STRINGS.forEach((s, i) => {
        const ids = tok.encode(s);
        assert.deepEqual(ids, reference.ids.smollm[i], JSON.stringify(s));
        assert.equal(tok.decode(ids), s);
      });
    });

    for (const pre of ["gpt-2", "llama-bpe", "qwen2", "default"]) {
      await t.step(`${pre} on the same vocabulary: ids equal Rust tokenizers'`, () => {
        const other = new Map(meta).set("tokenizer.ggml.pre", pre);
        other.set("tokenizer.ggml.add_bos_token", false);
        const tok2 = tokenizerFromGguf(other, SMOLLM2_GGUF);
        STRINGS.forEach((s, i) => {
          assert.deepEqual(tok2.encode(s), reference.ids[pre][i], `${pre}: ${JSON.stringify(s)}`);
        });
      });
    }
  },
});
