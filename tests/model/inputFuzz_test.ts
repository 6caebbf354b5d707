/**
 * Fuzzing the readers of user files (issue #20): `config.json`, eval suite YAML, safetensors
 * headers and `tokenizer.json`, generated and mutated. Every input must give a result or the
 * reader's own user-facing error (ModelError / UserError naming the file) — never another
 * exception — and the accepted results must be sane (dimensions within the documented limits,
 * grids bounded). Together with the policy and GGUF fuzzers this runs well over 100,000 cases.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CONFIG_LIMITS, parseConfig } from "../../src/model/config.ts";
import { ModelError } from "../../src/model/errors.ts";
import { readSafetensorsHeader } from "../../src/model/safetensors.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { MAX_DEPTHS, MAX_SAMPLES } from "../../src/eval/gridSpec.ts";
import { defaultSuite, parseSuiteYaml, SUITE_KEYS } from "../../src/eval/suite.ts";
import { UserError } from "../../src/userError.ts";

const VALID_CONFIG: Record<string, unknown> = {
  model_type: "llama",
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  rope_scaling: null,
};

/** Numbers that break naive readers: huge, tiny, negative, fractional, non-finite-looking. */
const nastyNumber = fc.oneof(
  fc.integer({ min: -5, max: 5000 }),
  fc.constantFrom(0, -1, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 53 + 2, 1e300, -1e300, 0.5),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const anyValue = fc.oneof(
  nastyNumber,
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom("llama", "qwen2", "qwen3", "mistral", "gemma", "", "linear", "llama3", "yarn"),
);

Deno.test("fuzz config.json: a config or a ModelError naming the file, within the limits", () => {
  const keys = [...Object.keys(VALID_CONFIG), "head_dim", "rope_parameters", "sliding_window"];
  const mutation = fc.array(
    fc.tuple(
      fc.constantFrom(...keys, "rope_scaling.factor", "rope_scaling.rope_type"),
      anyValue,
      fc.boolean(),
    ),
    { minLength: 1, maxLength: 4 },
  );
  let accepted = 0;
  fc.assert(
    fc.property(mutation, (edits) => {
      const json: Record<string, unknown> = structuredClone(VALID_CONFIG);
      for (const [key, value, remove] of edits) {
        if (key.startsWith("rope_scaling.")) {
          json.rope_scaling = { rope_type: "linear", factor: 2, [key.slice(13)]: value };
        } else if (remove) delete json[key];
        else json[key] = value;
      }
      try {
        const c = parseConfig(json, "m/config.json");
        accepted++;
        for (
          const [field, value] of Object.entries({
            hidden_size: c.hiddenSize,
            intermediate_size: c.intermediateSize,
            num_hidden_layers: c.numLayers,
            num_attention_heads: c.numHeads,
            num_key_value_heads: c.numKvHeads,
            head_dim: c.headDim,
            vocab_size: c.vocabSize,
          })
        ) {
          assert.ok(Number.isSafeInteger(value) && value > 0, `${field} ${value}`);
          assert.ok(value <= CONFIG_LIMITS[field], `${field} ${value} over its limit`);
        }
        assert.ok(c.ropeInvFreq.every(Number.isFinite), "finite RoPE frequencies");
      } catch (e) {
        if (!(e instanceof ModelError)) throw e;
        assert.match(e.message, /^m\/config\.json: /);
      }
    }),
    { numRuns: 40_000, seed: 20 },
  );
  assert.ok(accepted > 100, `${accepted} mutated configs were still valid`);
});

Deno.test("fuzz suite YAML: a suite or a UserError naming the file, with a bounded grid", () => {
  const keys = [...SUITE_KEYS, "unknown_key"];
  const fieldValue = fc.oneof(
    anyValue,
    fc.constantFrom(
      "1k,2k",
      "0:100:10",
      "0:100:0.0000001",
      "needle,ruler",
      "1e8",
      "99999k",
      "pretrained",
    ),
    fc.record({ needles: nastyNumber, share_word: nastyNumber }),
    fc.record({ hops: nastyNumber, chains: nastyNumber }),
    fc.record({ threshold: nastyNumber, max_new_tokens: nastyNumber }),
    fc.array(fc.oneof(nastyNumber, fc.string({ maxLength: 6 })), { maxLength: 5 }),
  );
  const document = fc.oneof(
    fc.dictionary(fc.constantFrom(...keys), fieldValue, { maxKeys: 5 }).map((d) =>
      JSON.stringify(d)
    ),
    fc.string({ maxLength: 40 }),
    fc.constantFrom("{", "- a\n- b", "samples: [", "!!binary x", "a: &x [*x]", "~", "1"),
  );
  const base = defaultSuite("planted-needle");
  fc.assert(
    fc.property(document, (text) => {
      try {
        const suite = parseSuiteYaml(text, "s.yaml", base);
        assert.ok(suite.samples >= 1 && suite.samples <= MAX_SAMPLES);
        assert.ok(suite.depths.length >= 1 && suite.depths.length <= MAX_DEPTHS);
        assert.ok(suite.lengths.every((n) => Number.isInteger(n) && n >= 16));
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        assert.match(e.message, /s\.yaml/);
      }
    }),
    { numRuns: 40_000, seed: 21 },
  );
});

/** A valid safetensors file: one f32 tensor `w` of shape [2, 2]. */
function safetensorsBytes(header: string, data = new Uint8Array(16)): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

Deno.test("fuzz safetensors headers: a header or a ModelError naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-st-fuzz-" });
  const file = `${dir}/model.safetensors`;
  const valid = JSON.stringify({ w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] } });
  const entry = fc.record({
    dtype: fc.oneof(fc.constantFrom("F32", "F16", "BF16", "I64", "F8_E4M3", ""), anyValue),
    shape: fc.oneof(fc.array(nastyNumber, { maxLength: 4 }), anyValue),
    data_offsets: fc.oneof(fc.tuple(nastyNumber, nastyNumber), anyValue),
  }, { requiredKeys: [] });
  const header = fc.oneof(
    fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(entry, anyValue), { maxKeys: 3 })
      .map((d) => JSON.stringify(d)),
    fc.tuple(fc.nat(valid.length), fc.string({ maxLength: 4 }))
      .map(([at, s]) => valid.slice(0, at) + s + valid.slice(at)),
    fc.string({ maxLength: 30 }),
  );
  const file8 = fc.oneof(
    header.map((h) => safetensorsBytes(h)),
    fc.tuple(fc.nat(60), fc.integer({ min: 0, max: 255 }), fc.constant(safetensorsBytes(valid)))
      .map(([at, b, bytes]) => {
        const copy = bytes.slice();
        if (copy.length) copy[at % copy.length] = b;
        return copy;
      }),
    fc.uint8Array({ maxLength: 24 }),
  );
  let accepted = 0;
  try {
    await fc.assert(
      fc.asyncProperty(file8, async (bytes) => {
        await Deno.writeFile(file, bytes);
        try {
          const h = await readSafetensorsHeader(file);
          accepted++;
          const size = bytes.length;
          for (const e of h.entries) {
            assert.ok(h.dataStart + e.end <= size, "a tensor inside the file");
          }
        } catch (e) {
          if (!(e instanceof ModelError)) throw e;
          assert.ok(e.message.includes(file), e.message);
        }
      }),
      { numRuns: 10_000, seed: 22 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(accepted > 10, `${accepted} files were still valid`);
});

Deno.test("fuzz tokenizer.json: a tokenizer or a ModelError naming the file", async () => {
  const source = await Deno.readTextFile(
    new URL("../../models/tiny-needle/tokenizer.json", import.meta.url),
  );
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-tok-fuzz-" });
  const pieces = ["null", "{}", "[]", '"x"', "-1", "1e400", '{"type":"BPE"}', ""];
  const mutated = fc.oneof(
    // cut anywhere
    fc.nat(source.length).map((n) => source.slice(0, n)),
    // a value swapped at a random place
    fc.tuple(fc.nat(source.length), fc.constantFrom(...pieces), fc.nat(12))
      .map(([at, s, cut]) => source.slice(0, at) + s + source.slice(at + cut)),
    // known fields replaced
    fc.tuple(
      fc.constantFrom(
        "model",
        "pre_tokenizer",
        "decoder",
        "normalizer",
        "added_tokens",
        "post_processor",
      ),
      anyValue,
    ).map(([key, value]) => JSON.stringify({ ...JSON.parse(source), [key]: value })),
  );
  let loaded = 0;
  try {
    await fc.assert(
      fc.asyncProperty(mutated, async (text) => {
        await Deno.writeTextFile(`${dir}/tokenizer.json`, text);
        try {
          const tok = await loadTokenizer(dir);
          if (tok) {
            loaded++;
            tok.decode(tok.encode("The special magic number is 42."));
          }
        } catch (e) {
          if (!(e instanceof ModelError)) throw e;
          assert.ok(e.message.includes("tokenizer.json"), e.message);
        }
      }),
      { numRuns: 600, seed: 23 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(loaded > 0, "some mutations still load");
});
