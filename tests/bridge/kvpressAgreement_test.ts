/**
 * Cross-engine agreement: the same policy on the same checkpoint and prompt, run by kvpolicy
 * (`run --json --trace`) and by NVIDIA kvpress 0.5.5 through the `kvpolicy_kvpress` bridge. Where
 * both engines define a method the same way, every (layer, KV head) must keep exactly the same
 * prompt positions and greedy decoding must give the same tokens; where they differ, the test pins
 * the documented difference (docs/kvpress.md). The checkpoints are the Hugging Face fixtures in
 * ../shared/fixtures (random weights, GQA 2:1 and MQA with q/k/v biases) and the real model,
 * SmolLM2-135M-Instruct Q4_1 (GGUF; transformers dequantizes it through the `gguf` package).
 */

import assert from "node:assert/strict";
import { compilePolicy } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { ROOT, runDeno } from "../cli/_helpers.ts";
import { SMOLLM2_GGUF, smollm2Missing } from "../runtime/_smollm2.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { kvpressMissing, runBridge } from "./_kvpress.ts";
import { runPolicy } from "../presses/_run.ts";
import { withEngine } from "../runtime/_helpers.ts";

/** Policies whose kept sets and tokens must be identical in both engines. */
const IDENTICAL = [
  "else -> snap(k=40, window=8, pool=5, reduce=avg);",
  "else -> snap(k=40, window=8, pool=7, reduce=max);",
  "else -> pyramid(k=48, beta=20, window=8, pool=7);",
  "else -> knorm(k=40);",
  "else -> tova(k=41%);",
  "else -> keydiff(k=37%);",
  "else -> keydiff(k=30, block=16);",
  "else -> expected(k=30, future=512, sink=4, cov=true, vnorm=true, eps=0);",
  "else -> window(sink=4, recent=20, decode=grow);",
  "else -> snap(k=40%, window=8, pool=5, reduce=avg) + chunkkv(chunk=10);",
  "else -> snap(k=40%, window=8, pool=5, reduce=avg) + critical(eps=0.0001, first=0.5);",
  "else -> snap(k=40%, window=8, pool=5, reduce=avg) + critical(adaptive=true, safeguard=0.2);",
  "else -> snap(k=40%, window=8, pool=5, reduce=avg) + adaptive;",
  "else -> expected(k=30, eps=0.01) + adaptive(safeguard=0.2);",
  "else -> keydiff(k=100%) + dms(threshold=-0.2, window=16);",
  "else -> knorm(k=40) + decoding(every=3);",
  "else -> keydiff(k=30) + decoding(every=2);",
  "layers 0 -> knorm(k=30); layers 1.. -> tova(k=50%);",
  "heads 0 -> full; else -> snap(k=40, window=8, pool=5, reduce=avg);",
  "heads duo(ratio=50%, qlen=64) -> full; else -> window(sink=4, recent=20, decode=grow);",
  "else -> full;",
];

/** 112 distinct token ids (no repeated token, so no exact score ties between positions). */
function promptIds(vocab: number): number[] {
  let state = 12345;
  const ids = Array.from({ length: vocab }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids.slice(0, 112);
}

interface Ours {
  tokens: number[];
  kept: number[][][];
}

/** `run --json --trace` of `policy` on `fixture`: the parsed output. */
async function runTraced(fixture: string, policy: string, ids: number[], maxNew = 8) {
  const r = await runDeno([
    "task",
    "run",
    "--model",
    fixture,
    "--policy",
    policy,
    "--prompt-ids",
    ids.join(","),
    "--max-new-tokens",
    String(maxNew),
    "--json",
    "--trace",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function runOurs(fixture: string, policy: string, ids: number[]): Promise<Ours> {
  const out = await runTraced(fixture, policy, ids);
  return {
    tokens: out.tokens,
    kept: out.trace.layers.map((l: { heads: { kept: number[] }[] }) => l.heads.map((h) => h.kept)),
  };
}

interface Theirs extends Ours {
  notes: string[];
  /** Bytes of kvpress's cache tensors after prefill, and of the full cache. */
  kv_bytes: number;
  full_kv_bytes: number;
}

async function runKvpress(fixture: string, policies: string[], ids: number[]): Promise<Theirs[]> {
  const dir = await Deno.makeTempDir();
  try {
    const args = ["-m", "kvpolicy_kvpress", "kept", "--model", fixture];
    for (const [i, text] of policies.entries()) {
      const { plan } = compilePolicy(text, "agreement.kvp", defaultRegistry());
      assert.ok(plan, text);
      await Deno.writeTextFile(`${dir}/${i}.json`, JSON.stringify(plan));
      args.push("--plan", `${dir}/${i}.json`);
    }
    args.push("--prompt-ids", ids.join(","), "--max-new-tokens", "8");
    const r = await runBridge(args);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sameKept(ours: number[][][], theirs: number[][][], what: string): void {
  assert.equal(ours.length, theirs.length, `${what}: layers`);
  ours.forEach((layer, l) =>
    layer.forEach((kept, h) =>
      assert.deepEqual(
        [...kept].sort((a, b) => a - b),
        theirs[l][h],
        `${what}: layer ${l} head ${h}`,
      )
    )
  );
}

for (const [fixture, vocab] of [["llama-gqa-f32", 300], ["qwen2-tied-f16", 320]] as const) {
  Deno.test({
    name:
      `kvpress agreement on ${fixture}: identical kept positions and tokens for ${IDENTICAL.length} policies`,
    ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
    async fn() {
      const dir = `${SHARED_DIR}/fixtures/${fixture}`;
      const ids = promptIds(vocab);
      const theirs = await runKvpress(dir, IDENTICAL, ids);
      for (const [i, policy] of IDENTICAL.entries()) {
        const ours = await runOurs(dir, policy, ids);
        sameKept(ours.kept, theirs[i].kept, policy);
        assert.deepEqual(ours.tokens, theirs[i].tokens, `${policy}: greedy tokens`);
        // The only note allowed: head-wise evictions are masks in kvpress, not freed memory.
        for (const note of theirs[i].notes) assert.match(note, /frees no memory/, policy);
      }
    },
  });
}

Deno.test({
  name: "kvpress agreement, pinned differences: random positions, the rolling window's extra entry",
  ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const ids = promptIds(300);
    const policies = ["else -> random(k=30, seed=3);", "else -> window(sink=4, recent=20);"];
    const [random, roll] = await runKvpress(dir, policies, ids);
    // random: same count per head, different generator; the note says so.
    const oursRandom = await runOurs(dir, policies[0], ids);
    oursRandom.kept.forEach((layer, l) =>
      layer.forEach((kept, h) => assert.equal(random.kept[l][h].length, kept.length))
    );
    assert.notDeepEqual(oursRandom.kept, random.kept);
    assert.match(random.notes[0], /torch's generator/);
    // window (roll): the same prefill selection; kvpress trims after each decoding step.
    const oursRoll = await runOurs(dir, policies[1], ids);
    sameKept(oursRoll.kept, roll.kept, policies[1]);
    assert.match(roll.notes[0], /one entry more/);
  },
});

/** models/tiny-needle (shipped, with its tokenizer) and BOS + 111 distinct ordinary ids. */
const TINY = {
  dir: `${ROOT}models/tiny-needle`,
  ids: [1, ...promptIds(2048).filter((id) => id > 2).slice(0, 111)],
};

Deno.test({
  name: "kvpress agreement on tiny-needle: KVzip (global and layer-wise cuts, fraction and count)",
  ignore: kvpressMissing("cross-engine agreement"),
  async fn() {
    // KVzip feeds the repeat prompts as text: a model with a tokenizer.
    const { dir, ids } = TINY;
    const policies = [
      "else -> kvzip(k=40%, chunk=64);",
      "else -> kvzip(k=30, chunk=48, layerwise=true);",
    ];
    const theirs = await runKvpress(dir, policies, ids);
    for (const [i, policy] of policies.entries()) {
      const ours = await runOurs(dir, policy, ids);
      sameKept(ours.kept, theirs[i].kept, policy);
      assert.deepEqual(ours.tokens, theirs[i].tokens, `${policy}: greedy tokens`);
      assert.match(theirs[i].notes[0], /whole prompt is reconstructed/);
    }
    // Not everything was kept: the cut really ran in both engines.
    assert.ok(theirs[0].kept.flat().every((h) => h.length < ids.length));
  },
});

Deno.test({
  name:
    "kvpress agreement, pinned: quant as transformers' quantized cache (per-token keys, its schedule)",
  ignore: kvpressMissing("cross-engine agreement"),
  async fn() {
    const { dir, ids } = TINY;
    const policies = [
      "else -> quant(bits=4, group=32, residual=32);",
      "else -> snap(k=40, window=8, pool=5, reduce=avg) + quant(bits=4);",
    ];
    const [quant, snapQuant] = await runKvpress(dir, policies, ids);
    // The prompt's whole cache as 4-bit codes plus an f32 scale and shift per group of 32 f32
    // values: 4/32 + 2/32 of the full cache's bytes after prefill.
    assert.equal(quant.kv_bytes / quant.full_kv_bytes, 3 / 16);
    assert.match(quant.notes.at(-1)!, /re-quantizes the whole cache/);
    // On this prompt the greedy tokens agree; the selection before quantization is SnapKV's.
    assert.deepEqual((await runOurs(dir, policies[0], ids)).tokens, quant.tokens);
    const ours = await runOurs(dir, policies[1], ids);
    sameKept(ours.kept, snapQuant.kept, policies[1]);
    assert.ok(snapQuant.kv_bytes < (40 / ids.length) * snapQuant.full_kv_bytes);
  },
});

/** The real model: 30 layers × 3 KV heads, a 128-token prompt of distinct ids. */
const REAL = [
  "else -> snap(k=64, window=16, pool=5, reduce=avg);",
  "else -> keydiff(k=30%);",
  "else -> tova(k=25%);",
  "else -> expected(k=50, future=512, sink=4, cov=true, vnorm=true, eps=0);",
  // KVzip's repeat prompts are SmolLM2's tokens, its suffix the ChatML assistant opening.
  "else -> kvzip(k=40%, chunk=64);",
  "heads duo(ratio=50%, qlen=500) -> full; else -> window(sink=4, recent=40, decode=grow);",
];

Deno.test({
  name: `kvpress agreement on SmolLM2-135M-Instruct (GGUF): ${REAL.length} policies, all 90 heads`,
  ignore: smollm2Missing() || kvpressMissing("cross-engine agreement on the real model"),
  async fn() {
    let state = 7;
    const ids = Array.from({ length: 128 }, (_, i) => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return 100 + ((state >> 8) % 200) * 200 + i; // distinct, inside the 49,152-token vocabulary
    });
    const theirs = await runKvpress(SMOLLM2_GGUF, REAL, ids);
    // One engine for every policy (the fixtures above go through `run` itself): on llvmpipe a
    // process per policy spent more on loading and warming up than on the policy.
    const runs = await withEngine(SMOLLM2_GGUF, async (engine) => {
      const out: Ours[] = [];
      for (const policy of REAL) {
        const run = await runPolicy(engine, policy, ids, 8, engine.config.eosTokenIds);
        out.push({ tokens: run.tokens, kept: run.trace.map((l) => l.heads.map((h) => h.kept)) });
      }
      return out;
    });
    for (const [i, policy] of REAL.entries()) {
      const ours = runs[i];
      assert.equal(ours.kept.length, 30);
      sameKept(ours.kept, theirs[i].kept, `SmolLM2 ${policy}`);
      if (policy.startsWith("heads duo")) {
        // Half the 90 heads stream (4 + 40 entries), the others keep the whole prompt.
        const sizes = ours.kept.flat().map((h) => h.length);
        assert.equal(sizes.filter((n) => n === 44).length, 45);
        assert.equal(sizes.filter((n) => n === ids.length).length, 45);
      }
      assert.deepEqual(ours.tokens, theirs[i].tokens, `SmolLM2 ${policy}: greedy tokens`);
    }
  },
});

Deno.test({
  name:
    "kvpress agreement, pinned: SimLayerKV decides the same lazy layers; kvpress keeps one entry less",
  ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const ids = promptIds(300);
    const policy = (t: number) =>
      `layers lazy(threshold=${t}, sink=4, recent=20, at=prefill, queries=1) -> ` +
      "window(sink=4, recent=20, decode=grow); else -> full;";
    // Our laziness scores, then a threshold in the widest gap between two of them, so that some
    // layers are lazy and some are not.
    const probe = await runTraced(dir, policy(0.99), ids, 1);
    const scores: number[] = probe.trace.layers.map((l: { lazy_score: number }) => l.lazy_score);
    const sorted = [...scores].sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i + 1 < sorted.length; i++) {
      if (sorted[i + 1] - sorted[i] > sorted[gap + 1] - sorted[gap]) gap = i;
    }
    const threshold = Number(((sorted[gap] + sorted[gap + 1]) / 2).toFixed(6));
    const ours = await runOurs(dir, policy(threshold), ids);
    const [theirs] = await runKvpress(dir, [policy(threshold)], ids);
    const n = ids.length;
    scores.forEach((score, l) => {
      const lazy = score > threshold;
      ours.kept[l].forEach((kept, h) => {
        if (!lazy) {
          assert.equal(kept.length, n, `layer ${l} keeps everything in kvpolicy`);
          assert.deepEqual(theirs.kept[l][h], kept, `layer ${l} keeps everything in kvpress`);
          return;
        }
        // Lazy: kvpolicy keeps sink 4 + recent 20; kvpress 4 + (20 − n_last), without N − 20.
        assert.equal(kept.length, 24);
        assert.deepEqual(theirs.kept[l][h], kept.filter((p) => p !== n - 20), `lazy layer ${l}`);
      });
    });
    assert.ok(scores.some((s) => s > threshold) && scores.some((s) => s <= threshold));
    assert.match(theirs.notes[0], /keeps 4 \+ 20 − 1 entries/);
  },
});

Deno.test({
  name:
    "kvpress agreement: `heads retrieval` resolved by export --model, the same heads kept whole",
  ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
  async fn() {
    // A fixture, not planted-needle: planted-needle's constructed layers give many positions the
    // same key, so kept keys could not be told apart by value.
    const model = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const policy =
      "heads retrieval(top=50%) -> full; else -> snap(k=48, window=8, pool=5, reduce=avg);";
    const out = `out/retrieval-${crypto.randomUUID().slice(0, 8)}.py`;
    const dir = await Deno.makeTempDir();
    try {
      const e = await runDeno([
        "task",
        "export",
        "--to",
        "kvpress",
        policy,
        "--model",
        model,
        "--out",
        out,
      ]);
      assert.equal(e.code, 0, e.stderr);
      // The plan the script embeds, with its resolved table, fed to the bridge's `kept`.
      const literal = (await Deno.readTextFile(`${ROOT}${out}`)).match(
        /^PLAN = json\.loads\((".*")\)$/m,
      );
      assert.ok(literal, "the script embeds the plan");
      const plan = JSON.parse(JSON.parse(literal[1]));
      assert.equal(plan.resolved.model, model);
      await Deno.writeTextFile(`${dir}/plan.json`, JSON.stringify(plan));
      const ids = promptIds(300);
      const r = await runBridge([
        "-m",
        "kvpolicy_kvpress",
        "kept",
        "--model",
        model,
        "--plan",
        `${dir}/plan.json`,
        "--prompt-ids",
        ids.join(","),
        "--max-new-tokens",
        "8",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const [theirs] = JSON.parse(r.stdout);
      const ours = await runOurs(model, policy, ids);
      sameKept(ours.kept, theirs.kept, policy);
      assert.deepEqual(ours.tokens, theirs.tokens);
      // Some heads are retrieval heads (kept whole), the others compressed.
      const sizes = ours.kept.flat().map((k) => k.length);
      assert.ok(sizes.includes(ids.length) && sizes.includes(48), `${sizes}`);
    } finally {
      await Deno.remove(`${ROOT}${out}`).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kvpress agreement, pinned: Ada-KV ranks alike; only the head budgets differ",
  ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const ids = promptIds(300);
    const policy = "else -> adakv(k=40, floor=0.2, window=8, pool=5, normalize=false);";
    const [theirs] = await runKvpress(dir, [policy], ids);
    const ours = await runOurs(dir, policy, ids);
    const n = ids.length;
    ours.kept.forEach((layer, l) => {
      // kvpress masks all but H·k entries of the layer; kvpolicy's capacities round per head.
      const total = (sets: number[][]) => sets.reduce((a, s) => a + s.length, 0);
      assert.equal(total(theirs.kept[l]), 2 * 40, `kvpress layer ${l}`);
      assert.ok(Math.abs(total(layer) - 2 * 40) <= 2, `kvpolicy layer ${l}: ${total(layer)}`);
      layer.forEach((kept, h) => {
        const a = new Set(kept), b = new Set(theirs.kept[l][h]);
        // The same scores rank the same: one head's set contains the other's.
        const nested = [...a].every((p) => b.has(p)) || [...b].every((p) => a.has(p));
        assert.ok(nested, `layer ${l} head ${h}: ${kept} vs ${theirs.kept[l][h]}`);
        for (let p = n - 8; p < n; p++) assert.ok(a.has(p) && b.has(p), `window ${p}`);
      });
    });
    assert.match(theirs.notes[0], /pins int\(floor·k\)/);
  },
});

Deno.test({
  name: "kvpress memory: physical presses free what kvpolicy frees; head-wise ones free nothing",
  ignore: sharedMissing() || kvpressMissing("cross-engine agreement"),
  async fn() {
    const dir = `${SHARED_DIR}/fixtures/llama-gqa-f32`;
    const ids = promptIds(300);
    const policies = [
      "else -> snap(k=40, window=8, pool=5, reduce=avg);",
      "heads 0 -> full; else -> snap(k=40, window=8, pool=5, reduce=avg);",
      "else -> snap(k=40%, window=8, pool=5, reduce=avg) + critical(adaptive=true);",
    ];
    const theirs = await runKvpress(dir, policies, ids);
    const headDim = 16, f32 = 4; // llama-gqa-f32: head_dim 16, float32 K and V
    for (const [i, policy] of policies.entries()) {
      const ours = await runOurs(dir, policy, ids);
      const kept = ours.kept.flat().reduce((a, k) => a + k.length, 0);
      const oursBytes = kept * headDim * f32 * 2;
      assert.ok(oursBytes < theirs[i].full_kv_bytes, policy);
      if (i === 0) assert.equal(theirs[i].kv_bytes, oursBytes, `${policy}: the same bytes`);
      else {
        assert.equal(theirs[i].kv_bytes, theirs[i].full_kv_bytes, `${policy}: kvpress masks only`);
        assert.ok(theirs[i].notes.some((n) => /frees no memory/.test(n)), policy);
      }
    }
  },
});
