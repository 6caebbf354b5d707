/**
 * `bench --profile`'s decode-step cost (`bench/stepCost.ts`): what it counts is what the steps
 * record, and the measurement runs end to end on the bundled tiny-needle model for a full, a
 * rolling-window and a quantised cache; `bench/gpuReport.ts`'s ratios. Times are reported, never
 * asserted (benchmarks only).
 */
import assert from "node:assert/strict";
import { gpuReport } from "../../bench/gpuReport.ts";
import { benchWeightBytes } from "../../bench/randomModel.ts";
import { countStep, decodeStepCost } from "../../bench/stepCost.ts";
import type { GpuOp } from "../../src/gpu/op.ts";
import type { Step } from "../../src/runtime/forwardPass.ts";
import { withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

function fakeOp(dispatches: number): GpuOp {
  return {
    label: `op×${dispatches}`,
    encode(pass) {
      for (let i = 0; i < dispatches; i++) pass.dispatchWorkgroups(1);
    },
    destroy() {},
  };
}

Deno.test("countStep: dispatches, passes split by buffer copies, copies", () => {
  const buffer = {} as GPUBuffer;
  const copy: Step = { copy: [buffer, 0, buffer, 0, 4] };
  assert.deepEqual(countStep([fakeOp(2), fakeOp(3)]), { dispatches: 5, passes: 1, copies: 0 });
  assert.deepEqual(countStep([fakeOp(1), copy, fakeOp(1), fakeOp(4), copy]), {
    dispatches: 6,
    passes: 2,
    copies: 2,
  });
  assert.deepEqual(countStep([]), { dispatches: 0, passes: 0, copies: 0 });
});

Deno.test("decodeStepCost: full, window and KIVI steps on tiny-needle", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const c = engine.config;
    const full = await decodeStepCost(engine, 48, "else -> full", 4);
    const window = await decodeStepCost(engine, 48, "else -> window(sink=4, recent=12)", 4);
    const quant = await decodeStepCost(engine, 48, "else -> snap(k=32) + quant(bits=4)", 4);
    for (const cost of [full, window, quant]) {
      // At least the embedding, a few kernels per layer, the final norm, logits and argmax.
      assert.ok(cost.dispatches >= 3 * c.numLayers + 3, `${cost.dispatches} dispatches`);
      assert.ok(cost.passes >= 1);
      for (const ms of [cost.encode_ms, cost.wall_ms, cost.floor_ms!]) {
        assert.ok(Number.isFinite(ms) && ms > 0);
      }
      if (engine.ctx.features.timestampQuery) assert.ok(cost.gpu_ms! > 0);
      else assert.equal(cost.gpu_ms, null);
    }
    // A KIVI cache attends through its own kernels and packs rows as they arrive: more work.
    assert.ok(quant.dispatches > full.dispatches, `${quant.dispatches} vs ${full.dispatches}`);
  });
});

Deno.test("gpuReport: the targets' ratios from one run's JSON", () => {
  const row = (policy: string, n: number, tok: number, kv: number) => ({
    policy,
    prompt_tokens: n,
    decode_tok_s: tok,
    kv_bytes: kv,
  });
  const bench = {
    device: "Test GPU",
    sections: [{
      rows: [
        row("else -> full", 1024, 100, 1e8),
        row("else -> window(sink=4, recent=1020)", 1024, 110, 1e8),
        row("else -> snap(k=1024)", 1024, 100, 1e8),
        row("else -> full", 16384, 40, 16e8),
        row("else -> window(sink=4, recent=1020)", 16384, 90, 1e8),
        row("else -> snap(k=1024)", 16384, 80, 1e8),
      ],
    }],
  };
  const torch = {
    device: "Test GPU",
    torch: "2",
    transformers: "5",
    attention: "sdpa",
    copy_gb_s: 2000,
    rows: [{ prompt_tokens: 1024, decode_tok_s: 50 }, { prompt_tokens: 16384, decode_tok_s: 20 }],
  };
  const text = gpuReport({ device: "Test GPU", rows: [] }, bench, torch, "small", "2026-01-01");
  // 16K: snap 80 / full 40 = 2.00; bound 100 / 40 = 2.50; ours 40 / transformers 20 = 2.00.
  assert.match(text, /\| 16384 \| 40\.0 \| 90\.0 \| 80\.0 \| 2\.00 \| 2\.50 \| 20\.0 \| 2\.00 \|/);
  assert.match(
    text,
    /\| 1024 \| 100\.0 \| 110\.0 \| 100\.0 \| 1\.00 \| 1\.00 \| 50\.0 \| 2\.00 \|/,
  );
  // Bandwidth: (weights + 1e8 B) × 100 tok/s against 2000 GB/s.
  const gbs = (benchWeightBytes("small") + 1e8) * 100 / 1e9;
  assert.ok(
    text.includes(`= ${gbs.toFixed(1)} GB/s, ${(100 * gbs / 2000).toFixed(0)}% of the 2000`),
  );
  assert.match(gpuReport({ device: "x", rows: [] }, bench, { error: "no torch" }), /no torch/);
});
