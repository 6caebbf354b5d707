/**
 * The benchmark's measurement loop (`bench/speedBench.ts`) and `bench` flag checks, on the bundled
 * `models/tiny-needle` at a short prompt: one row per policy × length, ratios against `full`
 * computed from the measured rows, KV bytes exact for a window, press time inside the prefill.
 */
import assert from "node:assert/strict";
import { runSpeedBench } from "../../bench/speedBench.ts";
import { benchCommand, benchPolicies } from "../../src/cli/benchCommand.ts";
import { UserError } from "../../src/cli/errors.ts";
import { withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

Deno.test("bench: rows, ratios and exact KV bytes on tiny-needle", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const c = engine.config;
    const rows = await runSpeedBench(engine, {
      lengths: [40, 64],
      policies: [
        "else -> full",
        "else -> window(sink=4, recent=12)",
        "else -> snap(k=16)",
        "else -> snap(k=16, window=8) + chunked(size=16)",
      ],
      labels: ["full", "window", "snap", "chunked"],
      decodeTokens: 4,
      repeats: 2,
      prefillChunk: 16, // several chunks per prompt
    });
    assert.equal(rows.length, 8);
    assert.deepEqual(rows.slice(0, 4).map((r) => r.policy), ["full", "window", "snap", "chunked"]);
    const rowBytes = c.numLayers * c.numKvHeads * c.headDim * 4 * 2; // f32 K and V, every head
    for (const n of [40, 64]) {
      const [full, window, snap, chunked] = rows.filter((r) => r.prompt_tokens === n);
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
      // Peaks: full allocates the prompt + the answer's room at once; snap holds the whole prompt
      // (and a layer being rebuilt) before it compresses; chunked never more than 16 + 16 rows
      // per head and one layer being rebuilt. The device's peak holds the weights and the cache.
      assert.equal(full.peak_kv_bytes, (n + 4) * rowBytes);
      assert.ok(snap.peak_kv_bytes >= n * rowBytes, JSON.stringify(snap));
      const layerRows = rowBytes / c.numLayers;
      assert.ok(
        chunked.peak_kv_bytes <= (c.numLayers + 1) * 32 * layerRows,
        JSON.stringify(chunked),
      );
      assert.ok(chunked.peak_kv_bytes < snap.peak_kv_bytes);
      assert.equal(chunked.kv_bytes, snap.kv_bytes);
      assert.equal(chunked.peak_kv_ratio, chunked.peak_kv_bytes / full.peak_kv_bytes);
      for (const r of [full, window, snap, chunked]) {
        assert.ok(r.peak_kv_bytes >= r.kv_bytes, JSON.stringify(r));
        assert.ok(
          r.peak_device_bytes >= r.peak_kv_bytes + engine.gpu.bytes,
          `${r.policy}: device peak ${r.peak_device_bytes}`,
        );
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
      // The chunked snap compresses the prompt of n = 40 or 64 in chunks of 16: the peak falls.
      assert.ok(chunked.peak_device_bytes < snap.peak_device_bytes, JSON.stringify(rows));
    }
  });
});

Deno.test("bench with one repetition: each policy alone, the device peak of the timed run equals a separate run's", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const plan = {
      lengths: [48],
      policies: [
        "else -> full",
        "else -> snap(k=16)",
        "else -> snap(k=16, window=8) + chunked(size=16)",
      ],
      decodeTokens: 4,
      prefillChunk: 16,
    };
    const one = await runSpeedBench(engine, { ...plan, repeats: 1 });
    const two = await runSpeedBench(engine, { ...plan, repeats: 2 });
    for (const [i, r] of one.entries()) {
      assert.equal(r.repeats, 1);
      assert.equal(r.decode_spread[0], r.decode_spread[1]);
      assert.equal(r.decode_spread[0], r.decode_tok_s);
      assert.equal(r.kv_bytes, two[i].kv_bytes);
      assert.equal(r.peak_kv_bytes, two[i].peak_kv_bytes);
      assert.equal(r.peak_device_bytes, two[i].peak_device_bytes, r.policy);
    }
    // run alone, the chunked policy's peak stays below the one-shot press's
    assert.ok(one[2].peak_device_bytes < one[1].peak_device_bytes, JSON.stringify(one));
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

Deno.test("bench --policy: files, names and inline text; a bad one fails at its line:col before any work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/w.kvp`, "else -> window(sink=4, recent=60);\n");
    const { labels, policies } = benchPolicies([
      "else -> full",
      "snapkv",
      `${dir}/w.kvp`,
    ]);
    assert.deepEqual(labels, ["else -> full", "policies/snapkv.kvp", `${dir}/w.kvp`]);
    assert.equal(policies[2], "else -> window(sink=4, recent=60);\n");
    await Deno.writeTextFile(`${dir}/bad.kvp`, "else -> full;\nelse -> snap(k=64, pol=7);\n");
    await assert.rejects(
      () => benchCommand(["--policy", `${dir}/bad.kvp`]),
      (e: Error) => /bad\.kvp:2:\d+/.test(e.message) && /pol/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
