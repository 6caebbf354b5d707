/** The press clock splits elapsed time into readback, compaction and the CPU work in between. */
import assert from "node:assert/strict";
import { PressClock } from "../../src/runtime/pressClock.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* spin */ }
};

Deno.test("PressClock: read, compact and the rest as selection", async () => {
  const t0 = performance.now();
  const clock = new PressClock();
  const value = await clock.read(async () => {
    await sleep(30);
    return 7;
  });
  assert.equal(value, 7);
  assert.equal(clock.compact(() => (busy(20), "done")), "done");
  busy(15); // selection: neither read nor compaction
  await assert.rejects(() => clock.read(() => Promise.reject(new Error("lost"))), /lost/);
  const t = clock.done();
  const elapsed = performance.now() - t0;
  assert.ok(t.readMs >= 25, `read ${t.readMs}`);
  assert.ok(t.compactMs >= 20, `compact ${t.compactMs}`);
  assert.ok(t.selectMs >= 15, `select ${t.selectMs}`);
  assert.ok(t.readMs + t.compactMs + t.selectMs <= elapsed + 1e-6);
});
