import assert from "node:assert/strict";
import { loadConfig, parseConfig } from "../../src/model/config.ts";
import { ModelError } from "../../src/model/errors.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const FIXTURES = [
  "llama-gqa-f32",
  "llama-bf16-sharded",
  "qwen2-tied-f16",
  "mistral-f32",
  "llama-tied-linear-rope-f32",
];

/** A minimal valid Llama config; tests override single fields. */
function llamaConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
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
    hidden_act: "silu",
    ...overrides,
  };
}

function assertModelError(fn: () => unknown, message: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ModelError, `expected ModelError, got ${error}`);
    assert.equal(error.message, message);
    return true;
  });
}

for (const fixture of FIXTURES) {
  Deno.test({
    name: `config: ${fixture} rope inverse frequencies match golden.json`,
    ignore: sharedMissing(),
    async fn() {
      const dir = `${SHARED_DIR}/fixtures/${fixture}`;
      const config = await loadConfig(dir);
      const golden = JSON.parse(await Deno.readTextFile(`${dir}/golden.json`));
      const expected: number[] = golden.debug.rope_inv_freq_float64;
      assert.equal(config.headDim, golden.debug.head_dim);
      assert.equal(config.ropeInvFreq.length, expected.length);
      expected.forEach((value, i) => {
        const relative = Math.abs(config.ropeInvFreq[i] - value) / value;
        assert.ok(relative < 1e-12, `inv_freq[${i}] = ${config.ropeInvFreq[i]}, want ${value}`);
      });
    },
  });
}

Deno.test({
  name: "config: fixture fields are normalised",
  ignore: sharedMissing(),
  async fn() {
    const qwen = await loadConfig(`${SHARED_DIR}/fixtures/qwen2-tied-f16`);
    assert.equal(qwen.architecture, "qwen2");
    assert.equal(qwen.attentionBias, true);
    assert.equal(qwen.tieWordEmbeddings, true);
    assert.equal(qwen.numKvHeads, 1);
    assert.equal(qwen.headDim, 16);
    assert.equal(qwen.rmsNormEps, 1e-6);
    assert.equal(qwen.slidingWindow, undefined, "use_sliding_window false: no window");
    assert.deepEqual(qwen.eosTokenIds, [2]);
    assert.equal(qwen.bosTokenId, 1);

    const mistral = await loadConfig(`${SHARED_DIR}/fixtures/mistral-f32`);
    assert.equal(mistral.architecture, "mistral");
    assert.equal(mistral.headDim, 8, "explicit head_dim wins over hidden/heads");
    assert.equal(mistral.attentionBias, false);
    assert.equal(mistral.slidingWindow, undefined);

    const gqa = await loadConfig(`${SHARED_DIR}/fixtures/llama-gqa-f32`);
    assert.equal(gqa.headDim, 16, "hidden_size / num_attention_heads");
    assert.equal(gqa.tieWordEmbeddings, false);
  },
});

Deno.test("config: defaults and eos lists", () => {
  const config = parseConfig(
    llamaConfig({
      num_key_value_heads: undefined,
      rms_norm_eps: undefined,
      eos_token_id: [2, 7],
      bos_token_id: null,
    }),
    "c.json",
  );
  assert.equal(config.numKvHeads, 4);
  assert.equal(config.rmsNormEps, 1e-6);
  assert.deepEqual(config.eosTokenIds, [2, 7]);
  assert.equal(config.bosTokenId, null);
  assert.equal(config.attentionBias, false);
});

Deno.test("config: llama attention_bias true means q/k/v biases", () => {
  assert.equal(parseConfig(llamaConfig({ attention_bias: true }), "c.json").attentionBias, true);
});

Deno.test("config: rope scaling variants", () => {
  const plain = parseConfig(llamaConfig(), "c.json").ropeInvFreq;
  const linear = parseConfig(
    llamaConfig({ rope_scaling: { rope_type: "linear", factor: 2 } }),
    "c.json",
  ).ropeInvFreq;
  plain.forEach((value, i) => assert.equal(linear[i], value / 2));
  const defaultType = parseConfig(
    llamaConfig({ rope_scaling: { rope_type: "default" } }),
    "c.json",
  ).ropeInvFreq;
  assert.deepEqual(defaultType, plain);
  // transformers v5 style: theta and type inside rope_parameters.
  const v5 = parseConfig(
    llamaConfig({
      rope_theta: undefined,
      rope_parameters: { rope_type: "default", rope_theta: 500 },
    }),
    "c.json",
  );
  assert.equal(v5.ropeTheta, 500);
  assert.equal(v5.ropeInvFreq[1], 1 / 500 ** (2 / 16));
});

Deno.test("config: mistral sliding window is recorded only when it can take effect", () => {
  const mistral = (window: unknown) =>
    parseConfig(llamaConfig({ model_type: "mistral", sliding_window: window }), "c.json");
  assert.equal(mistral(64).slidingWindow, 64);
  assert.equal(mistral(256).slidingWindow, undefined);
  assert.equal(mistral(null).slidingWindow, undefined);
});

Deno.test("config: unsupported values name the file and field", () => {
  assertModelError(
    () => parseConfig(llamaConfig({ model_type: "gpt2" }), "m/config.json"),
    'm/config.json: "model_type" "gpt2" is not supported (supported: llama, mistral, qwen2, qwen3, gemma3_text)',
  );
  assertModelError(
    () => parseConfig(llamaConfig({ hidden_act: "gelu" }), "m/config.json"),
    'm/config.json: "hidden_act" "gelu" is not supported (only "silu")',
  );
  assertModelError(
    () => parseConfig(llamaConfig({ hidden_size: -3 }), "m/config.json"),
    'm/config.json: "hidden_size" must be a positive integer, got -3',
  );
  assertModelError(
    () => parseConfig(llamaConfig({ vocab_size: undefined }), "m/config.json"),
    'm/config.json: "vocab_size" must be a positive integer, got nothing (the key is missing)',
  );
  assertModelError(
    () => parseConfig(llamaConfig({ rope_scaling: { type: "yarn", factor: 4 } }), "m/config.json"),
    'm/config.json: "rope_scaling.type" "yarn" is not supported (supported: "linear", "llama3")',
  );
  assertModelError(
    () => parseConfig(llamaConfig({ num_key_value_heads: 3 }), "m/config.json"),
    'm/config.json: "num_attention_heads" (4) must be a multiple of "num_key_value_heads" (3)',
  );
  assertModelError(
    () => parseConfig([1, 2], "m/config.json"),
    "m/config.json: must hold a JSON object",
  );
});

Deno.test("config: other refused settings", () => {
  const refused: Record<string, unknown>[] = [
    { rope_scaling: { rope_type: "llama3", factor: 8 } },
    { rope_scaling: { rope_type: "linear", factor: 0 } },
    { rope_scaling: "linear" },
    { quantization_config: { bits: 4 } },
    { mlp_bias: true },
    { model_type: "qwen2", use_sliding_window: true },
    { head_dim: 15 },
    { hidden_size: 66, num_attention_heads: 4 },
    { tie_word_embeddings: "yes" },
    { eos_token_id: "x" },
    { rms_norm_eps: 0 },
  ];
  for (const overrides of refused) {
    assert.throws(
      () => parseConfig(llamaConfig(overrides), "m/config.json"),
      (error: unknown) =>
        error instanceof ModelError && error.message.startsWith("m/config.json: "),
      JSON.stringify(overrides),
    );
  }
});

Deno.test("config: loadConfig reports a missing file and bad JSON", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => loadConfig(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message === `${dir}/config.json: not found (a model folder needs a config.json)`,
    );
    await Deno.writeTextFile(`${dir}/config.json`, "{ nope");
    await assert.rejects(
      () => loadConfig(dir),
      (error: unknown) =>
        error instanceof ModelError &&
        error.message.startsWith(`${dir}/config.json: not valid JSON`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: absurd dimensions are refused by name before anything is allocated", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { num_hidden_layers: 2 ** 31 },
      /"num_hidden_layers" is 2147483648, over kvpolicy's limit of 1024/,
    ],
    [{ hidden_size: 2 ** 40, head_dim: 64 }, /"hidden_size" is 1099511627776, over .* 65536/],
    [{ intermediate_size: 2 ** 30 }, /"intermediate_size" is 1073741824, over/],
    [{ vocab_size: 2 ** 40 }, /"vocab_size" is 1099511627776, over .* 16777216/],
    [
      { num_attention_heads: 4096, num_key_value_heads: 4096, head_dim: 64 },
      /"num_attention_heads" is 4096/,
    ],
    [{ head_dim: 1024 }, /"head_dim" is 1024, over kvpolicy's limit of 512/],
    [{ max_position_embeddings: 2 ** 40 }, /"max_position_embeddings" is 1099511627776, over/],
  ];
  for (const [overrides, message] of cases) {
    assert.throws(
      () => parseConfig(llamaConfig(overrides), "m/config.json"),
      (e: unknown) => e instanceof ModelError && message.test(e.message),
      JSON.stringify(overrides),
    );
  }
  // the limits themselves are accepted (Gemma-sized head_dim 256, a 262k vocabulary)
  assert.equal(parseConfig(llamaConfig({ head_dim: 256 }), "m/config.json").headDim, 256);
  assert.equal(parseConfig(llamaConfig({ vocab_size: 262144 }), "m/config.json").vocabSize, 262144);
});

Deno.test("config: Gemma 3 — transformers' defaults, per-layer windows and RoPE, refusals", () => {
  const gemma = (overrides: Record<string, unknown> = {}) =>
    parseConfig(
      llamaConfig({
        model_type: "gemma3_text",
        hidden_act: undefined,
        rope_theta: undefined,
        hidden_size: 640,
        num_attention_heads: 4,
        num_key_value_heads: 1,
        num_hidden_layers: 8,
        ...overrides,
      }),
      "gemma/config.json",
    );
  const c = gemma();
  assert.equal(c.architecture, "gemma3");
  assert.equal(c.headDim, 256); // Gemma3TextConfig's default, not hidden / heads
  assert.ok(c.qkNorm && c.tieWordEmbeddings);
  const g = c.gemma3!;
  assert.equal(g.embedScale, Math.fround(Math.sqrt(640)));
  assert.equal(g.attentionScale, 1 / 16); // query_pre_attn_scalar 256
  // Every 6th layer is global; the window defaults to 4096.
  assert.deepEqual(g.layerWindows, [4096, 4096, 4096, 4096, 4096, null, 4096, 4096]);
  // Global RoPE base 1e6, sliding 1e4: the first inverse frequency is 1, the second θ^(-2/256).
  assert.ok(Math.abs(c.ropeInvFreq[1] - 1e6 ** (-2 / 256)) < 1e-15);
  assert.ok(Math.abs(g.localRopeInvFreq[1] - 1e4 ** (-2 / 256)) < 1e-15);
  const own = gemma({
    head_dim: 64,
    query_pre_attn_scalar: 48,
    sliding_window: 512,
    layer_types: Array.from(
      { length: 8 },
      (_, i) => i % 2 ? "full_attention" : "sliding_attention",
    ),
    rope_parameters: {
      sliding_attention: { rope_type: "default", rope_theta: 500 },
      full_attention: { rope_type: "linear", factor: 8, rope_theta: 20000 },
    },
  });
  assert.equal(own.gemma3!.attentionScale, 48 ** -0.5);
  assert.deepEqual(own.gemma3!.layerWindows, [512, null, 512, null, 512, null, 512, null]);
  assert.ok(Math.abs(own.ropeInvFreq[1] - 20000 ** (-2 / 64) / 8) < 1e-15);
  assert.ok(Math.abs(own.gemma3!.localRopeInvFreq[1] - 500 ** (-2 / 64)) < 1e-15);
  // The older keys: rope_theta, rope_local_base_freq, rope_scaling (global layers only).
  const old = gemma({
    rope_theta: 1e5,
    rope_local_base_freq: 1e3,
    rope_scaling: { type: "linear", factor: 2 },
  });
  assert.ok(Math.abs(old.ropeInvFreq[1] - 1e5 ** (-2 / 256) / 2) < 1e-15);
  assert.ok(Math.abs(old.gemma3!.localRopeInvFreq[1] - 1e3 ** (-2 / 256)) < 1e-15);
  assertModelError(
    () => gemma({ final_logit_softcapping: 30 }),
    'gemma/config.json: "final_logit_softcapping" 30 is not supported (null)',
  );
  assertModelError(
    () => gemma({ hidden_activation: "gelu" }),
    'gemma/config.json: "hidden_activation" "gelu" is not supported (only "gelu_pytorch_tanh")',
  );
  assertModelError(
    () => gemma({ layer_types: ["sliding_attention"] }),
    'gemma/config.json: "layer_types" must list one type per layer (8)',
  );
  assertModelError(
    () => gemma({ layer_types: Array(8).fill("chunked_attention") }),
    'gemma/config.json: "layer_types[0]" "chunked_attention" is not supported ' +
      '("sliding_attention" or "full_attention")',
  );
  assertModelError(
    () => gemma({ use_bidirectional_attention: true }),
    'gemma/config.json: "use_bidirectional_attention": true is not supported',
  );
});
