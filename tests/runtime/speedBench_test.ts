/**
 * The benchmark's measurement loop (`bench/speedBench.ts`) and `bench` flag checks, on the bundled
 * `models/tiny-needle` at a short prompt: one row per policy × length, ratios against `full`
 * computed from the measured rows, KV bytes exact for a window, press time inside the prefill.
 */
import assert from "node:assert/strict";
import { runSpeedBench } from "../../bench/speedBench.ts";
import { benchCommand } from "../../src/cli/benchCommand.ts";
import { UserError } from "../../src/cli/errors.ts";
import { withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("bench: rows, ratios and exact KV bytes on tiny-needle", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const c = engine.config;
    const rows = await runSpeedBench(engine, {
      lengths: [40, 64],
      policies: ["else -> full", "else -> window(sink=4, recent=12)", "else -> snap(k=16)"],
      decodeTokens: 4,
      repeats: 2,
      prefillChunk: 16, // several chunks per prompt
    });
    assert.equal(rows.length, 6);
    const rowBytes = c.numLayers * c.numKvHeads * c.headDim * 4 * 2; // f32 K and V, every head
    for (const n of [40, 64]) {
      const [full, window, snap] = rows.filter((r) => r.prompt_tokens === n);
      assert.equal(full.decode_ratio, 1);
      assert.equal(full.kv_ratio, 1);
      // Full holds the prompt + 3 fed tokens; the window keeps 16 (a ring); snap keeps 16 + 3.
      assert.equal(full.kv_bytes, (n + 3) * rowBytes);
      assert.equal(window.kv_bytes, 16 * rowBytes);
      assert.equal(snap.kv_bytes, 19 * rowBytes);
      // Only snap reads scores back (its observation-window votes); full and window read nothing.
      assert.ok(snap.press_read_ms > 0, JSON.stringify(snap));
      assert.equal(full.press_read_ms, 0);
      assert.equal(window.press_read_ms, 0);
      for (const r of [full, window, snap]) {
        assert.equal(r.repeats, 2);
        assert.ok(r.decode_tok_s > 0 && r.prefill_tok_s > 0 && r.ttft_ms > 0, JSON.stringify(r));
        assert.ok(r.decode_spread[0] <= r.decode_tok_s && r.decode_tok_s <= r.decode_spread[1]);
        assert.ok(r.press_share >= 0 && r.press_share < 1, `press share ${r.press_share}`);
        // The breakdown: non-negative parts that cover the press (medians of per-run parts).
        const parts = [r.press_read_ms, r.press_select_ms, r.press_compact_ms];
        assert.ok(parts.every((p) => p >= 0), JSON.stringify(parts));
        assert.ok(parts[0] + parts[1] + parts[2] >= r.press_ms - 1e-6, JSON.stringify(r));
        assert.equal(r.decode_ratio, r.decode_tok_s / full.decode_tok_s);
        assert.equal(r.kv_ratio, r.kv_bytes / full.kv_bytes);
      }
    }
  });
});

Deno.test("bench: an unknown --shape or a bad --prefill-chunk is a clear error before anything runs", async () => {
  await assert.rejects(
    () => benchCommand(["--shape", "small,huge"]),
    (e: Error) => e instanceof UserError && /unknown --shape 'huge'.*small-mha/.test(e.message),
  );
  await assert.rejects(
    () => benchCommand(["--prefill-chunk", "0"]),
    (e: Error) =>
      e instanceof UserError && /--prefill-chunk expects an integer ≥ 1/.test(e.message),
  );
});
