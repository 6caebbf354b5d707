/** StreamingLLM window: prefill selection and decode-time eviction; SimLayerKV's growing window. */
import assert from "node:assert/strict";
import {
  selectWindow,
  windowCapacity,
  windowEvictIndex,
  windowPress,
} from "../../src/plugins/windowPress.ts";
import { explicitWindowInput, range } from "./_inputs.ts";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { checkExecutable } from "../../src/runtime/executable.ts";

Deno.test("window: sink + recent at prefill, everything when they cover N", () => {
  const input = { promptLength: 10, numKvHeads: 2 };
  assert.deepEqual(selectWindow(input, { sink: 2, recent: { tokens: 3 } }), [
    [0, 1, 7, 8, 9],
    [0, 1, 7, 8, 9],
  ]);
  assert.deepEqual(selectWindow(input, { sink: 0, recent: { tokens: 3 } })[0], [7, 8, 9]);
  assert.deepEqual(selectWindow(input, { sink: 4, recent: { tokens: 6 } })[0], range(0, 10));
  assert.deepEqual(selectWindow(input, { sink: 9, recent: { tokens: 6 } })[0], range(0, 10));
  // 25 % of 10 = 2.5 → 3 (halves round up); 0 % still keeps one entry.
  assert.deepEqual(selectWindow(input, { sink: 1, recent: { fraction: 0.25 } })[0], [0, 7, 8, 9]);
  assert.deepEqual(selectWindow(input, { sink: 0, recent: { fraction: 0 } })[0], [9]);
  assert.equal(windowCapacity({ sink: 4, recent: { fraction: 0.5 } }, 10), 9);
});

Deno.test("window: RazorAttention's recent=max(251, 10%) through the press, from policy text", () => {
  const press = compileOrThrow("else -> window(sink=4, recent=max(251, 10%))").rules[0].pipeline[0];
  const kept = (n: number) => windowPress.select!(explicitWindowInput(n, 2, 1, []), press.params);
  // N = 1000: 10 % is 100, so 251 recent entries (749..999) after the 4 sinks, on both heads.
  const short = kept(1000);
  assert.deepEqual(short[0], [...range(0, 4), ...range(749, 1000)]);
  assert.deepEqual(short[1], short[0]);
  // N = 4000: 10 % is 400 > 251.
  assert.deepEqual(kept(4000)[0], [...range(0, 4), ...range(3600, 4000)]);
  // N = 200: sink + 251 covers the prompt, so everything stays.
  assert.deepEqual(kept(200)[0], range(0, 200));
  // Decoding keeps it bounded at sink + L_h, fixed at prefill.
  assert.deepEqual(windowPress.bound!(press.params, 1000), { capacity: 255, ringStart: 4 });
  assert.deepEqual(windowPress.bound!(press.params, 4000), { capacity: 404, ringStart: 4 });
  // min(...) caps it: min(20 %, 64) is 20 of 100 and 64 of 1000.
  const capped = compileOrThrow("else -> window(sink=0, recent=min(20%, 64))").rules[0].pipeline[0];
  assert.deepEqual(
    windowPress.select!(explicitWindowInput(100, 1, 1, []), capped.params)[0],
    range(80, 100),
  );
  assert.deepEqual(
    windowPress.select!(explicitWindowInput(1000, 1, 1, []), capped.params)[0],
    range(936, 1000),
  );
});

Deno.test("window: decoding evicts the oldest non-sink entry and stays bounded", () => {
  // Simulate: prompt of 8, sink 2, recent 3 → capacity 5; then decode 6 tokens.
  const params = { sink: 2, recent: { tokens: 3 } };
  const positions = selectWindow({ promptLength: 8, numKvHeads: 1 }, params)[0];
  assert.deepEqual(positions, [0, 1, 5, 6, 7]);
  const capacity = windowCapacity(params, 8);
  for (let next = 8; next < 14; next++) {
    positions.push(next);
    const evict = windowEvictIndex(positions, params.sink, capacity);
    assert.equal(evict, 2, "the entry just after the sinks, in cache order here");
    positions.splice(evict!, 1);
    assert.deepEqual(positions, [0, 1, next - 2, next - 1, next]);
  }
  // Cache order does not matter: positions are compared, and the cache index is returned.
  assert.equal(windowEvictIndex([9, 0, 7, 1, 8, 10], 2, 5), 2);
  assert.equal(windowEvictIndex([9, 0, 7, 1, 8], 2, 5), null);
  assert.equal(windowEvictIndex([3, 1, 2], 0, 2), 1);
});

Deno.test("window: a short prompt grows to capacity before evicting", () => {
  const params = { sink: 1, recent: { tokens: 4 } };
  const positions = selectWindow({ promptLength: 3, numKvHeads: 1 }, params)[0];
  const capacity = windowCapacity(params, 3);
  const evictions = [];
  for (let next = 3; next < 8; next++) {
    positions.push(next);
    const evict = windowEvictIndex(positions, params.sink, capacity);
    if (evict !== null) positions.splice(evict, 1);
    evictions.push(evict);
  }
  assert.deepEqual(evictions, [null, null, 1, 1, 1]);
  assert.deepEqual(positions, [0, 4, 5, 6, 7]);
});

Deno.test("window decode=auto: grows on `layers lazy` rules (SimLayerKV), rolls elsewhere (StreamingLLM)", () => {
  const plan = compileOrThrow(
    [
      "layers lazy -> window(sink=4, recent=1020);",
      "layers lazy(threshold=0.5) -> window(sink=4, recent=100, decode=roll);",
      "layers 0 -> window(sink=4, recent=60) + quant(bits=4);",
      "heads retrieval -> window(sink=4, recent=60, decode=grow);",
      "else -> window(sink=4, recent=2000);",
    ].join("\n"),
  );
  const windows = plan.rules.map((r) => r.pipeline[0]);
  assert.deepEqual(windows.map((w) => w.params.decode), ["grow", "roll", "roll", "grow", "roll"]);
  assert.deepEqual(windows.map((w) => w.when), [
    "prefill",
    "bounded",
    "bounded",
    "prefill",
    "bounded",
  ]);
  assert.throws(() => compileOrThrow("else -> window(decode=slide)"), /roll, grow|roll.*grow/);
});

Deno.test("every shipped policy compiles, and the executor accepts it (window + quant on lazy layers)", async () => {
  const dirs = ["../../policies/", "../../docs/reproduction/"];
  let count = 0;
  for (const dir of dirs) {
    for (const e of Deno.readDirSync(new URL(dir, import.meta.url))) {
      if (!e.name.endsWith(".kvp")) continue;
      const text = await Deno.readTextFile(new URL(dir + e.name, import.meta.url));
      const plan = compileOrThrow(text, e.name);
      assert.doesNotThrow(() => checkExecutable(plan, defaultRegistry()), e.name);
      count++;
    }
  }
  assert.ok(count >= 25, `${count} policies`);
});
