/**
 * Kernel choices: every alternative kernel gives the model the same logits and greedy ids as the
 * adapter's defaults (tiny-needle, prompt logits through chunked prefill, then decoding), and
 * `KVPOLICY_KERNELS` is parsed strictly.
 */
import assert from "node:assert/strict";
import {
  defaultKernels,
  type KernelChoice,
  parseKernelChoice,
} from "../../src/gpu/kernelChoice.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { defaultPrefillChunk } from "../../src/runtime/workSizes.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { generateWithPlan } from "../../src/runtime/planGeneration.ts";
import { assertClose } from "../gpu/_reference.ts";
import { GPU_AVAILABLE } from "../gpu/_gpu.ts";

const MODEL = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("KVPOLICY_KERNELS: op=kernel pairs, clear errors otherwise", () => {
  assert.deepEqual(parseKernelChoice("prefill=workgroup, gemm=tiled"), {
    prefill: "workgroup",
    gemm: "tiled",
  });
  assert.deepEqual(parseKernelChoice(""), {});
  assert.throws(
    () => parseKernelChoice("prefill=fast"),
    /unknown prefill kernel 'fast' \(flash, thread, workgroup\)/,
  );
  assert.throws(() => parseKernelChoice("attention=thread"), /'attention=thread' is not op=kernel/);
  assert.throws(() => parseKernelChoice("gemm"), /'gemm' is not op=kernel/);
  assert.equal(defaultKernels(true).prefill, "flash");
  assert.equal(defaultKernels(false).decode, "workgroup");
  // Prefill chunks: 512 tokens on CPU adapters, 2048 on GPUs (more queries per attention
  // dispatch), fewer where the widest activation row times the chunk would not bind.
  const shape = { intermediateSize: 8192, numHeads: 32, headDim: 64, hiddenSize: 2048 };
  const gib = 2 ** 30;
  assert.equal(defaultPrefillChunk({ isFallbackAdapter: true, maxBindingBytes: gib }, shape), 512);
  assert.equal(
    defaultPrefillChunk({ isFallbackAdapter: false, maxBindingBytes: gib }, shape),
    2048,
  );
  const small = { isFallbackAdapter: false, maxBindingBytes: 2 ** 25 }; // 32 MiB: 1024 rows of 8192
  assert.equal(defaultPrefillChunk(small, shape), 1024);
  assert.equal(defaultPrefillChunk(small, { ...shape, intermediateSize: 2 ** 24 }), 1);
  assert.deepEqual(parseKernelChoice("gemv=reduce,fusion=separate,math=f16"), {
    gemv: "reduce",
    fusion: "separate",
    math: "f16",
  });
  assert.equal(defaultKernels(true).math, "f32");
  assert.equal(defaultKernels(false).math, "f32");
  assert.throws(() => parseKernelChoice("math=bf16"), /unknown math kernel 'bf16' \(f32, f16\)/);
  assert.throws(
    () => parseKernelChoice("fusion=on"),
    /unknown fusion kernel 'on' \(fused, separate\)/,
  );
});

Deno.test({
  name: "every kernel choice gives the default's logits and greedy ids (tiny-needle)",
  ignore: !GPU_AVAILABLE,
  async fn() {
    const ids = Array.from({ length: 150 }, (_, i) => 3 + (i * 37) % 1500);
    const run = async (kernels: Partial<KernelChoice>, kvDtype: "f32" | "f16" = "f32") => {
      const engine = await Engine.open(MODEL, { kernels, kvDtype });
      try {
        assert.deepEqual({ ...engine.ctx.kernels, ...kernels }, engine.ctx.kernels);
        const logits = await engine.promptLogits(ids, 64);
        const gen = await engine.generate({ promptIds: ids, maxNewTokens: 6 });
        // Decoding really ran the chosen GEMV body, fused or not (tiny-needle: all fusible).
        const keys = engine.ctx.pipelineKeys();
        // Prefill ran f16-arithmetic GEMMs exactly when asked to.
        const f16Math = keys.some((k) => k.includes(":f16math"));
        assert.equal(f16Math, engine.ctx.kernels.math === "f16", `${keys}`);
        const fused = keys.filter((k) => k.startsWith("fusedGemv:"));
        const tpr = engine.ctx.kernels.gemv === "rows" ? 1 : 16;
        if (engine.ctx.kernels.fusion === "fused") {
          assert.ok(fused.length >= 3 && fused.every((k) => k.endsWith(`:${tpr}`)), `${keys}`);
        } else {
          assert.ok(
            !fused.length && keys.some((k) => k.startsWith("gemv:") && k.endsWith(`:${tpr}`)),
            `${keys}`,
          );
        }
        return { logits: logits.at(-1)!, tokens: gen.tokens };
      } finally {
        engine.close();
      }
    };
    const base = await run({});
    const choices: Partial<KernelChoice>[] = [
      { prefill: "flash", gemm: "tiled", decode: "workgroup", gemv: "reduce" },
      { prefill: "thread", gemm: "register", decode: "thread", fusion: "separate" },
      { prefill: "workgroup", gemm: "tiled", decode: "thread", gemv: "reduce", fusion: "separate" },
      { prefill: "thread", gemm: "tiled128", decode: "workgroup", gemv: "rows" },
    ];
    for (const kernels of choices) {
      const got = await run(kernels);
      const what = JSON.stringify(kernels);
      assertClose(got.logits, base.logits, 1e-3, 1e-3, what);
      assert.deepEqual(got.tokens, base.tokens, what);
    }
    // An f16 KV cache read as packed u32 pairs or natively (shader-f16) gives the same model.
    const adapter = await navigator.gpu.requestAdapter();
    if (adapter?.features.has("shader-f16")) {
      const packed = await run({ f16: "packed" }, "f16");
      const native = await run({ f16: "native" }, "f16");
      assertClose(native.logits, packed.logits, 1e-4, 1e-4, "f16 cache: native vs packed");
      assert.deepEqual(native.tokens, packed.tokens, "f16 cache: native vs packed");
      // f16 arithmetic in the prefill GEMMs: the logits move by f16 rounding (≈ 5e-4 relative
      // per step; 0.008–0.010 of logits up to 11.5 measured here), the greedy ids not at all.
      for (const kernels of [{ math: "f16" }, { math: "f16", gemm: "tiled128" }] as const) {
        const got = await run(kernels);
        assertClose(got.logits, base.logits, 0.03, 0.005, JSON.stringify(kernels));
        assert.deepEqual(got.tokens, base.tokens, JSON.stringify(kernels));
      }
    }
  },
});

Deno.test({
  name: "a 4-bit quantised cache decodes the same tokens with either decode kernel (tiny-needle)",
  ignore: !GPU_AVAILABLE,
  async fn() {
    const ids = Array.from({ length: 150 }, (_, i) => 3 + (i * 37) % 1500);
    const plan = compileOrThrow("else -> quant(bits=4);");
    const tokens: number[][] = [];
    for (const decode of ["thread", "workgroup"] as const) {
      const engine = await Engine.open(MODEL, { kernels: { decode } });
      try {
        const req = { promptIds: ids, maxNewTokens: 12, stopIds: [] };
        const { result } = await generateWithPlan(engine, plan, req);
        // The cache really is quantised: far fewer bytes than the f32 entries it holds.
        assert.ok(result.kv.keptBytes < 0.6 * result.kv.fullBytes, JSON.stringify(result.kv));
        // …and decoded by the chosen split pass.
        const key = decode === "workgroup" ? "quantDecodeAttnWg:" : "quantDecodeAttnG:";
        assert.ok(engine.ctx.pipelineKeys().some((k) => k.startsWith(key)), key);
        tokens.push(result.tokens);
      } finally {
        engine.close();
      }
    }
    assert.deepEqual(tokens[1], tokens[0]);
  },
});
