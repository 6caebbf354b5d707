import assert from "node:assert/strict";
import { ModelError } from "../../src/model/errors.ts";
import { loadTokenizer, type TextTokenizer } from "../../src/model/tokenizer.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const GOLDEN = ["short", "needle300", "needle1500"];

let cached: TextTokenizer | undefined;
async function tinyNeedleTokenizer(): Promise<TextTokenizer> {
  cached ??= (await loadTokenizer(`${SHARED_DIR}/models/tiny-needle`))!;
  return cached;
}

/** Streams `ids` through a stream decoder; returns the pieces (the flush is the last one). */
function streamPieces(tokenizer: TextTokenizer, ids: number[], skip = false): string[] {
  const decoder = tokenizer.streamDecoder({ skipSpecialTokens: skip });
  const pieces = ids.map((id) => decoder.push(id));
  pieces.push(decoder.flush());
  return pieces;
}

for (const name of GOLDEN) {
  Deno.test({
    name: `tokenizer: ${name}.json prompt_text encodes to prompt_ids and decodes back`,
    ignore: sharedMissing(),
    async fn() {
      const golden = JSON.parse(
        await Deno.readTextFile(`${SHARED_DIR}/golden/tiny-needle/${name}.json`),
      );
      const tokenizer = await tinyNeedleTokenizer();
      const ids = tokenizer.encode(golden.prompt_text);
      assert.deepEqual(ids, golden.prompt_ids);
      assert.equal(ids[0], 1, "BOS first");
      assert.deepEqual(
        tokenizer.encode(golden.prompt_text, { addSpecialTokens: false }),
        ids.slice(1),
      );
      assert.equal(tokenizer.decode(ids, { skipSpecialTokens: true }), golden.prompt_text);
      assert.equal(tokenizer.decode(golden.greedy_ids), golden.greedy_text);
      assert.equal(streamPieces(tokenizer, golden.greedy_ids).join(""), golden.greedy_text);
    },
  });
}

Deno.test({
  name: "tokenizer: streaming never splits a multi-byte character",
  ignore: sharedMissing(),
  async fn() {
    const tokenizer = await tinyNeedleTokenizer();
    const text = "Zoë saw 🎉 and 日本語 — then 🎉🎉!";
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    assert.ok(ids.length > [...text].length, "some characters span several byte tokens");
    const pieces = streamPieces(tokenizer, ids);
    assert.equal(pieces.join(""), text);
    for (const piece of pieces) assert.ok(!piece.includes("\uFFFD"), JSON.stringify(pieces));
    // Decoding token by token, naively, would split the emoji.
    assert.ok(ids.some((id) => tokenizer.decode([id]).includes("\uFFFD")));
    // The emoji's first bytes produce no text until the character is complete.
    const emoji = tokenizer.encode("🎉", { addSpecialTokens: false });
    const decoder = tokenizer.streamDecoder();
    const emojiPieces = emoji.map((id) => decoder.push(id));
    assert.deepEqual(emojiPieces, [...emoji.slice(1).map(() => ""), "🎉"]);
  },
});

Deno.test({
  name: "tokenizer: special tokens are kept or skipped on request",
  ignore: sharedMissing(),
  async fn() {
    const tokenizer = await tinyNeedleTokenizer();
    const ids = [1, ...tokenizer.encode("Hi there.", { addSpecialTokens: false }), 2];
    assert.equal(tokenizer.decode(ids), "<s>Hi there.</s>");
    assert.equal(tokenizer.decode(ids, { skipSpecialTokens: true }), "Hi there.");
    assert.equal(streamPieces(tokenizer, ids, true).join(""), "Hi there.");
    assert.equal(tokenizer.tokenId("</s>"), 2);
    assert.equal(tokenizer.tokenText(1), "<s>");
    assert.equal(tokenizer.vocabSize, 2048);
    assert.equal(tokenizer.decode([]), "");
    // Ids past the tokenizer (a padded vocab_size) decode visibly, between the known runs.
    assert.equal(tokenizer.decode([5000]), "⟨id 5000⟩");
    const hi = tokenizer.encode("Hi there.", { addSpecialTokens: false });
    assert.equal(tokenizer.decode([...hi, 5000, ...hi]), "Hi there.⟨id 5000⟩Hi there.");
    assert.equal(
      streamPieces(tokenizer, [...hi, 4096, 2049], false).join(""),
      "Hi there.⟨id 4096⟩⟨id 2049⟩",
    );
  },
});

Deno.test({
  name: "tokenizer: a folder without tokenizer.json gives null",
  ignore: sharedMissing(),
  async fn() {
    assert.equal(await loadTokenizer(`${SHARED_DIR}/models/stories260K`), null);
  },
});

Deno.test("tokenizer: an unreadable tokenizer.json is a ModelError naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, "{ not json");
    await assert.rejects(
      () => loadTokenizer(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message.startsWith(`${dir}/tokenizer.json: not valid JSON`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify({ model: { type: "Nope" } }));
    await assert.rejects(
      () => loadTokenizer(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message.startsWith(`${dir}/tokenizer.json: not a usable tokenizer`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
