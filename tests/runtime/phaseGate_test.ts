/**
 * `PhaseGate`: a FIFO lock that lets several generations take turns on the device (the benchmark
 * decodes every policy back to back with it). The lock alone, then generations on the bundled
 * `models/tiny-needle`: their phases alternate, their tokens are those of runs one after the
 * other, and their clocks count only the time they hold the gate.
 */
import assert from "node:assert/strict";
import { PhaseGate, withPhase } from "../../src/runtime/phaseGate.ts";
import { GREEDY, withEngine } from "./_helpers.ts";

const MODEL_DIR = new URL("../../models/tiny-needle", import.meta.url).pathname;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

Deno.test("phaseGate: turns in call order, one holder at a time, released on errors", async () => {
  const gate = new PhaseGate();
  const log: string[] = [];
  let holders = 0;
  const worker = async (name: string, turns: number) => {
    for (let i = 0; i < turns; i++) {
      const release = await gate.acquire();
      holders++;
      assert.equal(holders, 1, "two holders at once");
      log.push(`${name}${i}`);
      await sleep(2);
      holders--;
      release();
      release(); // a second call changes nothing
    }
  };
  await Promise.all([worker("a", 3), worker("b", 2), worker("c", 3)]);
  assert.deepEqual(log, ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "c2"]);

  // A phase that throws still hands the gate on.
  await assert.rejects(withPhase(gate, () => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await withPhase(gate, () => Promise.resolve(7)), 7);
  assert.equal(await withPhase(undefined, () => Promise.resolve(8)), 8);
});

Deno.test("phaseGate: generations sharing a gate alternate phases and keep their tokens", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const prompts = [
      Array.from({ length: 48 }, (_, i) => 5 + (i * 37) % 300),
      Array.from({ length: 33 }, (_, i) => 9 + (i * 53) % 400),
    ];
    const req = (promptIds: number[]) => ({
      promptIds,
      maxNewTokens: 7,
      stopIds: [],
      readEvery: 2,
      sampling: GREEDY,
    });
    const alone = [];
    for (const p of prompts) alone.push((await engine.generate(req(p))).tokens);

    const gate = new PhaseGate();
    const log: string[] = [];
    const together = await Promise.all(prompts.map((p, i) =>
      engine.generate({
        ...req(p),
        gate,
        onTokens: (ids) => log.push(`${"ab"[i]}${ids.length}`),
      })
    ));
    assert.deepEqual(together.map((r) => r.tokens), alone);
    // The first token comes with the prefill stage, then batches of 2, 2, 2 in turns.
    assert.deepEqual(log, ["a1", "b1", "a2", "b2", "a2", "b2", "a2", "b2"]);
  });
});

Deno.test("phaseGate: prefill and decode clocks stop while another holds the gate", async () => {
  await withEngine(MODEL_DIR, async (engine) => {
    const promptIds = Array.from({ length: 40 }, (_, i) => 5 + (i * 37) % 200);
    const WAIT = 400;
    const gate = new PhaseGate();
    // Someone else holds the gate first, and again between each of the decode batches.
    const other = (async () => {
      for (let i = 0; i < 4; i++) await withPhase(gate, () => sleep(WAIT));
    })();
    const t = performance.now();
    const r = await engine.generate({
      promptIds,
      maxNewTokens: 7,
      stopIds: [],
      readEvery: 2,
      gate,
    });
    const wall = performance.now() - t;
    await other;
    assert.equal(r.tokens.length, 7);
    // Four turns of the other holder passed inside this call, none on its clocks.
    assert.ok(wall >= 4 * WAIT, `wall ${wall}`);
    const counted = r.timing.prefillMs + r.timing.decodeMs;
    assert.ok(counted <= wall - 4 * WAIT + 50, `counted ${counted} of ${wall} ms`);
    assert.ok(r.timing.decodeMs > 0 && r.timing.prefillMs >= r.timing.ttftMs);
  });
});
