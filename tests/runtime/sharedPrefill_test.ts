/**
 * One prefill shared by several plans (`src/runtime/sharedPrefill.ts`): every plan that starts
 * from the shared prefill must generate the same tokens, keep the same entries per head and
 * report the same cache as when it prefills alone, under both protocols; the shared path must
 * really be taken (rows copied, not prefilled again); plans that cannot share are told apart.
 */
import assert from "node:assert/strict";
import { compileOrThrow } from "../../src/plan/compile.ts";
import type { Plan } from "../../src/plan/plan.ts";
import type { Engine } from "../../src/runtime/engine.ts";
import type { ObserveRequest } from "../../src/runtime/generationTypes.ts";
import type { LayerTrace } from "../../src/runtime/policyTrace.ts";
import {
  answerWithPlan,
  generateWithPlan,
  planExecutor,
} from "../../src/runtime/planGeneration.ts";
import { RaggedKvCache } from "../../src/runtime/raggedKvCache.ts";
import {
  prefillRecorders,
  prefillShared,
  releaseShared,
  type SharedObserve,
  type SharedPrefill,
  shareGroupsOf,
  unionObserve,
  usableShared,
} from "../../src/runtime/sharedPrefill.ts";
import { seededRandom, withEngine } from "./_helpers.ts";
import { openEvalEngine } from "../../src/runtime/evalEngine.ts";

const TINY = new URL("../../models/tiny-needle", import.meta.url).pathname;
const N = 300;
const CHUNK = 64;
const NEW = 6;

/** Policies of every kind of observation: windows of several sizes, column sums, statistics. */
const POLICIES = [
  "else -> snap(k=64, window=32, pool=7)",
  "else -> snap(k=25%, window=16, pool=5, reduce=avg)",
  "else -> snap(k=64, window=128)",
  "else -> tova(k=25%)",
  "else -> pyramid(k=64, beta=20, window=8, pool=7)",
  "else -> snap(k=25%, window=32, pool=5, reduce=avg) + critical(eps=0.0001, first=0.5)",
  "else -> snap(k=50%, window=32, pool=5, reduce=avg) + critical(adaptive=true)",
  "else -> h2o(heavy=10%, recent=10%)",
  "else -> expected(k=25%, future=64, sink=4)",
  "else -> expected(k=50%, future=64, sink=4)",
  "else -> keydiff(k=25%, block=64)",
  "else -> kvzip(k=25%, chunk=128)",
  "else -> kvzip(k=50%, chunk=128)",
  "heads duo(ratio=50%, qlen=64) -> full; else -> window(sink=4, recent=32)",
  "layers lazy -> window(sink=4, recent=60); heads retrieval -> full; else -> snap(k=48, pool=7)",
  "else -> quant(bits=4)",
  "else -> full",
];

function prompt(): number[] {
  const rand = seededRandom(17);
  return [1, ...Array.from({ length: N - 1 }, () => 3 + Math.floor(rand() * 2000))];
}

/** What a run kept: per layer the lazy flag and per head the kept positions. */
function kept(trace: LayerTrace[]): unknown {
  return trace.map((l) => ({ lazy: l.lazy, heads: l.heads.map((h) => [h.rule, h.kept]) }));
}

/** Counts {@link RaggedKvCache.copyPrefixFrom} calls (each a plan started from a shared prefill). */
function countCopies(): { count: () => number; restore: () => void } {
  const original = RaggedKvCache.prototype.copyPrefixFrom;
  let n = 0;
  RaggedKvCache.prototype.copyPrefixFrom = function (this: RaggedKvCache, src, rows) {
    n++;
    return original.call(this, src, rows);
  };
  return { count: () => n, restore: () => RaggedKvCache.prototype.copyPrefixFrom = original };
}

/** The policies grouped as the eval engine groups them ({@link shareGroupsOf}). */
function groups(engine: Engine): { policies: string[]; observe: SharedObserve }[] {
  const observes = POLICIES.map((p) => planExecutor(engine, compileOrThrow(p)).observeRequest());
  return shareGroupsOf(N, CHUNK, observes).map((g) => ({
    policies: g.map((i) => POLICIES[i]),
    observe: unionObserve(g.map((i) => observes[i])),
  }));
}

async function eachShared(
  engine: Engine,
  ids: number[],
  run: (policy: string, shared: SharedPrefill | undefined) => Promise<void>,
): Promise<void> {
  for (const g of groups(engine)) {
    const shared = await prefillShared(engine, ids, g.observe, CHUNK);
    try {
      for (const p of g.policies) await run(p, shared);
    } finally {
      releaseShared(engine.ctx, shared);
    }
  }
}

Deno.test("shared prefill: query-aware runs match each plan's own run (tokens, kept entries, KV)", async () => {
  await withEngine(TINY, async (engine) => {
    const ids = prompt();
    const grouped = groups(engine);
    // A 128-query window on a 300-token prompt needs other chunk starts than the rest.
    assert.equal(grouped.length, 2, JSON.stringify(grouped.map((g) => g.policies)));
    // Expected Attention's query statistics (sink 4) and Duo's on-the-fly means (sink 0) are
    // recorded in one prefill, shared with plans that record none.
    const expected = grouped.find((g) => g.policies.some((p) => p.includes("expected")))!;
    assert.ok(expected.policies.some((p) => p.includes("duo")), `${expected.policies}`);
    assert.ok(expected.policies.some((p) => p.includes("snap")), `${expected.policies}`);
    assert.deepEqual(expected.observe.statisticsSinks, [0, 4]);
    const alone = new Map<string, unknown>();
    for (const p of POLICIES) {
      const { result, executor } = await generateWithPlan(engine, compileOrThrow(p), {
        promptIds: ids,
        maxNewTokens: NEW,
        prefillChunk: CHUNK,
      });
      alone.set(p, { tokens: result.tokens, kv: result.kv, kept: kept(executor.trace) });
    }
    const copies = countCopies();
    try {
      await eachShared(engine, ids, async (p, shared) => {
        const { result, executor } = await generateWithPlan(engine, compileOrThrow(p), {
          promptIds: ids,
          maxNewTokens: NEW,
          prefillChunk: CHUNK,
          shared,
        });
        const mine = { tokens: result.tokens, kv: result.kv, kept: kept(executor.trace) };
        assert.deepEqual(mine, alone.get(p), p);
      });
      assert.equal(copies.count(), POLICIES.length, "every plan started from the shared prefill");
    } finally {
      copies.restore();
    }
  });
});

Deno.test("shared prefill: query-agnostic answers match each plan's own (context kept, answers)", async () => {
  await withEngine(TINY, async (engine) => {
    const ids = prompt();
    const questions = [ids.slice(40, 47), ids.slice(200, 204)];
    const run = async (p: string, shared?: SharedPrefill) => {
      const { result, executor } = await answerWithPlan(engine, compileOrThrow(p), {
        contextIds: ids,
        questions,
        maxNewTokens: 4,
        prefillChunk: CHUNK,
        shared,
      });
      return {
        context: result.context.kv,
        answers: result.answers.map((a) => ({ tokens: a.tokens, kv: a.kv })),
        kept: kept(executor.trace),
      };
    };
    const alone = new Map<string, unknown>();
    for (const p of POLICIES) alone.set(p, await run(p));
    const copies = countCopies();
    try {
      await eachShared(engine, ids, async (p, shared) => {
        assert.deepEqual(await run(p, shared), alone.get(p), p);
      });
      assert.equal(copies.count(), POLICIES.length);
    } finally {
      copies.restore();
    }
  });
});

Deno.test("shared prefill: refused for another prompt, other chunks, a wider window or missing sums", async () => {
  await withEngine(TINY, async (engine) => {
    const ids = prompt();
    const observe: ObserveRequest = { promptWindow: 32, firstStep: false };
    const shared = await prefillShared(engine, ids, observe, CHUNK);
    try {
      assert.equal(usableShared(shared, ids, CHUNK, observe), shared);
      assert.equal(
        usableShared(shared, ids, CHUNK, { promptWindow: 16, firstStep: false }),
        shared,
      );
      assert.equal(usableShared(shared, ids.slice(0, -1), CHUNK, observe), undefined);
      assert.equal(usableShared(shared, [...ids.slice(0, -1), 5], CHUNK, observe), undefined);
      assert.equal(usableShared(shared, ids, 128, observe), undefined);
      assert.equal(
        usableShared(shared, ids, CHUNK, { promptWindow: 128, firstStep: false }),
        undefined,
      );
      assert.equal(usableShared(shared, ids, CHUNK, { ...observe, columnSums: true }), undefined);
      assert.equal(
        usableShared(shared, ids, CHUNK, { ...observe, queryStatistics: { sink: 4 } }),
        undefined,
      );
      const statistics = await prefillShared(
        engine,
        ids,
        { ...observe, statisticsSinks: [0, 4] },
        CHUNK,
      );
      try {
        for (const sink of [0, 4]) {
          const wants = { ...observe, queryStatistics: { sink } };
          assert.equal(usableShared(statistics, ids, CHUNK, wants), statistics);
          assert.equal(prefillRecorders(engine, statistics, wants, N).queryStatistics?.sink, sink);
        }
        const other = { ...observe, queryStatistics: { sink: 2 } };
        assert.equal(usableShared(statistics, ids, CHUNK, other), undefined);
      } finally {
        releaseShared(engine.ctx, statistics);
      }
      // A chunked plan never starts from it: it prefills alone, and the engine refuses a
      // shared prefill handed over for another prompt.
      const chunked = compileOrThrow("else -> snap(k=64, window=32) + chunked(size=64)");
      const copies = countCopies();
      try {
        const a = await generateWithPlan(engine, chunked, {
          promptIds: ids,
          maxNewTokens: 2,
          prefillChunk: CHUNK,
          shared,
        });
        assert.equal(copies.count(), 0);
        assert.equal(a.result.tokens.length, 2);
      } finally {
        copies.restore();
      }
      await assert.rejects(
        engine.generate({ promptIds: ids.slice(1), maxNewTokens: 1, shared }),
        /shared prefill/,
      );
    } finally {
      releaseShared(engine.ctx, shared);
    }
  });
});

Deno.test("copyPrefixFrom: refuses rows beyond either cache's capacity", async () => {
  await withEngine(TINY, (engine) => {
    const big = new RaggedKvCache(engine.ctx, engine.config, 8, engine.kvDtype);
    const small = new RaggedKvCache(engine.ctx, engine.config, 4, engine.kvDtype);
    try {
      assert.throws(() => small.copyPrefixFrom(big, 8), /8 rows do not fit head 0 of layer 0/);
      assert.throws(() => big.copyPrefixFrom(small, 5), /5 rows do not fit/);
      small.copyPrefixFrom(big, 4);
    } finally {
      big.release();
      small.release();
    }
    return Promise.resolve();
  });
});

Deno.test("eval engine sharePrefill: groups plans that can share, runs the rest alone, same results", async () => {
  const engine = await openEvalEngine(TINY);
  try {
    const ids = prompt();
    const sources = [
      "else -> snap(k=64, window=32)",
      "else -> h2o(heavy=10%, recent=10%)",
      "else -> snap(k=64, window=16) + chunked(size=128)",
      "else -> kvzip(k=25%, chunk=128)",
      "else -> snap(k=25%, window=16)",
      "else -> kvzip(k=50%, chunk=128)",
    ];
    const plans = sources.map((s) => compileOrThrow(s));
    const gen = (i: number) =>
      engine.generate({ promptIds: ids, maxNewTokens: NEW, plan: plans[i] })
        .then((r) => ({ tokens: r.tokens, kv: r.kv }));
    // The prompt fits one default prefill chunk (512 tokens or more on every adapter), so
    // every plan shares but the chunked one.
    await assertSharedAsAlone(engine, ids, plans, gen, plans.length - 1);
  } finally {
    engine.close?.();
  }
});

Deno.test("eval engine sharePrefill: perplexity from a shared prefix equals each plan's own", async () => {
  const engine = await openEvalEngine(TINY);
  try {
    const ids = prompt();
    const from = 240;
    const sources = [
      "else -> snap(k=64, window=32)",
      "else -> h2o(heavy=10%, recent=10%)",
      "else -> expected(k=25%, future=64, sink=4)",
      "else -> kvzip(k=25%, chunk=128)",
      "else -> window(sink=4, recent=32)",
      "else -> quant(bits=4)",
      "else -> full",
    ];
    const plans = sources.map((s) => compileOrThrow(s));
    const score = (i: number) => engine.scoreTokens({ ids, plan: plans[i], from });
    // Every plan starts from the shared prefix, Expected Attention's too: the shared prefill
    // records its query statistics for it (the only plan that asks).
    await assertSharedAsAlone(engine, ids.slice(0, from), plans, score, plans.length);
  } finally {
    engine.close?.();
  }
});

/**
 * Runs `run(i)` for every plan alone, then all of them through `engine.sharePrefill` of `prefix`:
 * the results must be equal, and `copies` plans must have started from the shared prefill.
 */
async function assertSharedAsAlone<T>(
  engine: Awaited<ReturnType<typeof openEvalEngine>>,
  prefix: number[],
  plans: Plan[],
  run: (i: number) => Promise<T>,
  copies: number,
): Promise<void> {
  const alone = [];
  for (const i of plans.keys()) alone.push(await run(i));
  const counter = countCopies();
  try {
    assert.deepEqual(await engine.sharePrefill!(prefix, plans, run), alone);
    assert.equal(counter.count(), copies);
  } finally {
    counter.restore();
  }
}
