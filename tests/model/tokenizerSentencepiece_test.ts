/**
 * A sentencepiece-style BPE `tokenizer.json` with byte fallback, in the layout of Llama 2 /
 * Mistral / TinyLlama (metaspace `▁`, `<0xNN>` byte tokens, BOS prepended), loaded through the
 * same library and wrapper as the byte-level BPE of the default model.
 */
import assert from "node:assert/strict";
import { loadTokenizer } from "../../src/model/tokenizer.ts";

/** A tiny Llama-2-style tokenizer: specials, 256 byte tokens, a few pieces and merges. */
function llama2StyleTokenizer(): object {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) {
    vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  }
  const pieces = [
    "▁",
    "H",
    "e",
    "l",
    "o",
    "w",
    "r",
    "d",
    "ll",
    "▁H",
    "▁w",
    "or",
    "▁He",
    "llo",
    "▁Hello",
    "▁wor",
    "▁world",
  ];
  for (const p of pieces) vocab[p] = Object.keys(vocab).length;
  return {
    version: "1.0",
    added_tokens: [
      {
        id: 0,
        content: "<unk>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
      {
        id: 1,
        content: "<s>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
      {
        id: 2,
        content: "</s>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, {
        type: "Replace",
        pattern: { String: " " },
        content: "▁",
      }],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, {
        Sequence: { id: "B", type_id: 1 },
      }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: ["l l", "▁ H", "▁ w", "o r", "▁H e", "ll o", "▁He llo", "▁w or", "▁wor l", "▁worl d"],
    },
  };
}

Deno.test("sentencepiece-style BPE with byte fallback: encode, fall back to bytes, decode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const json = llama2StyleTokenizer() as {
      model: { vocab: Record<string, number>; merges: string[] };
    };
    // "▁worl" is needed by the merges chain: add it so "▁world" can form.
    json.model.vocab["▁worl"] = Object.keys(json.model.vocab).length;
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    const tok = (await loadTokenizer(dir))!;
    const v = json.model.vocab;
    assert.deepEqual(tok.encode("Hello world"), [1, v["▁Hello"], v["▁world"]]);
    // "ö" (UTF-8 C3 B6) is not in the vocabulary: byte-fallback tokens <0xC3> <0xB6>.
    const ids = tok.encode("Hello wörld");
    assert.deepEqual(ids, [1, v["▁Hello"], v["▁w"], 3 + 0xc3, 3 + 0xb6, v["r"], v["l"], v["d"]]);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "Hello wörld");
    // Streaming holds back half a UTF-8 character until its second byte arrives.
    const stream = tok.streamDecoder({ skipSpecialTokens: true });
    const pieces = ids.map((id) => stream.push(id));
    assert.equal(pieces.join("") + stream.flush(), "Hello wörld");
    assert.ok(!pieces.some((p) => p.includes("\ufffd")), JSON.stringify(pieces));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
