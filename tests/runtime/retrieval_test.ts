/**
 * The `retrieval` detector (RazorAttention) on the real runtime: GPU probe scores equal the CPU
 * reference model's; on models/planted-needle head 1.0 (the only induction head) ranks first,
 * the profile is cached outside the model folder, reused and recomputed when the model changes, and the design card's
 * policy answers the needle with a several-times smaller cache.
 */
import assert from "node:assert/strict";
import { CpuReferenceModel } from "../../src/model/cpuReference.ts";
import { cpuLayerScores } from "../../src/plugins/cpuScores.ts";
import {
  retrievalKvHeadScores,
  retrievalQueryHeadScores,
  selectRetrievalHeads,
} from "../../src/plugins/retrievalDetector.ts";
import { demoPrompt } from "../../src/cli/demoPrompt.ts";
import { Engine } from "../../src/runtime/engine.ts";
import { modelHash } from "../../src/runtime/modelHash.ts";
import {
  cappedProbe,
  PROFILE_FILE,
  profilePath,
  retrievalProfile,
  retrievalScores,
  retrievalScoresTable,
} from "../../src/runtime/retrievalProfile.ts";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";
import { runPolicy } from "../presses/_run.ts";
import { withRandomGemma } from "./_checkpoint.ts";

const MODEL = new URL("../../models/planted-needle", import.meta.url).pathname;

function assertScoresClose(got: number[], want: number[], what: string): void {
  assert.equal(got.length, want.length, what);
  got.forEach((g, i) =>
    assert.ok(
      Math.abs(g - want[i]) <= 2e-6 + 1e-4 * Math.abs(want[i]),
      `${what}[${i}]: ${g} ≠ ${want[i]}`,
    )
  );
}

/**
 * `engine`'s GPU probe scores (the probe of `seed`, block `block`; null: RazorAttention's size)
 * equal those of the float64 CPU reference's attention, per query head and per KV head.
 */
async function assertProbeScoresMatchCpu(
  engine: Engine,
  seed: number,
  block: number | null,
): Promise<Awaited<ReturnType<typeof retrievalScores>>> {
  const got = await retrievalScores(engine, { seed, block });
  const probe = cappedProbe(engine.config, seed, block);
  assert.equal(got.probe.length, probe.tokens.length);
  const cpu = new CpuReferenceModel(engine.weights);
  cpu.forward(probe.tokens, { logits: "last" });
  const { numHeads: H, numKvHeads } = engine.config;
  const N = probe.tokens.length;
  for (let l = 0; l < engine.config.numLayers; l++) {
    const rows = cpuLayerScores(cpu, l).windowAttention(N);
    const want = retrievalQueryHeadScores(
      probe,
      H,
      (h, i) => rows[h].subarray(i * N, (i + 1) * N),
    );
    assertScoresClose(got.queryHeads[l].echo, want.echo, `layer ${l} echo`);
    assertScoresClose(got.queryHeads[l].induction, want.induction, `layer ${l} induction`);
    const kv = retrievalKvHeadScores(want, H / numKvHeads);
    assertScoresClose(got.layers[l].echo, kv.echo, `layer ${l} KV echo`);
    assertScoresClose(got.layers[l].induction, kv.induction, `layer ${l} KV induction`);
  }
  return got;
}

Deno.test({
  name: "retrieval: GPU probe scores equal the CPU reference model's (llama-gqa-f32, full probe)",
  ignore: sharedMissing(),
  async fn() {
    const engine = await Engine.open(`${SHARED_DIR}/fixtures/llama-gqa-f32`);
    try {
      const got = await assertProbeScoresMatchCpu(engine, 3, null);
      assert.equal(got.probe.block, 31); // ⌊(128 − 1) / 4⌋: RazorAttention's size for this model
    } finally {
      engine.close();
    }
  },
});

Deno.test("retrieval: on the default model (tiny-needle) GPU probe scores equal the CPU reference's", async () => {
  const engine = await Engine.open(new URL("../../models/tiny-needle", import.meta.url).pathname);
  try {
    // A 32-token block (a 129-token probe) keeps the float64 reference quick.
    await assertProbeScoresMatchCpu(engine, 5, 32);
  } finally {
    engine.close();
  }
});

Deno.test("retrieval: probe scores use the model's query scale (Gemma 3, query_pre_attn_scalar ≠ head_dim)", async () => {
  // Scale 1/√40, where 1/√16 would be 0.25.
  await withRandomGemma(31, 2, { queryPreAttnScalar: 40 }, async (dir) => {
    const engine = await Engine.open(dir);
    try {
      await assertProbeScoresMatchCpu(engine, 2, 12);
    } finally {
      engine.close();
    }
  });
});

Deno.test("retrieval: the profile is cached outside the model, reused, and recomputed when the model changes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kvpolicy-retrieval-" });
  const cacheDir = await Deno.makeTempDir({ prefix: "kvpolicy-cache-" });
  try {
    for await (const e of Deno.readDir(MODEL)) {
      // without the shipped profile, so that the probe runs
      if (e.isFile && e.name !== PROFILE_FILE) {
        await Deno.copyFile(`${MODEL}/${e.name}`, `${dir}/${e.name}`);
      }
    }
    await Deno.chmod(dir, 0o755);
    const modelFiles = () => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const shippedFiles = modelFiles();
    // A link where the profile goes must be replaced, never written through.
    const outside = `${cacheDir}/outside.txt`;
    await Deno.writeTextFile(outside, "not yours\n");
    const opts = { block: 64, cacheDir }; // a 257-token probe
    let engine = await Engine.open(dir);
    try {
      const hash = await modelHash(dir);
      await Deno.symlink(outside, profilePath(hash, cacheDir));
      const first = await retrievalProfile(engine, opts);
      assert.equal(first.computed, true);
      assert.equal(first.saved, true);
      assert.equal(first.path, profilePath(hash, cacheDir));
      assert.equal(
        await Deno.readTextFile(outside),
        "not yours\n",
        "the link's target is untouched",
      );
      assert.ok(!(await Deno.lstat(first.path!)).isSymlink, "the link was replaced by the profile");
      assert.deepEqual(modelFiles(), shippedFiles, "nothing written into the model folder");
      const text = await Deno.readTextFile(first.path!);
      assert.match(text, new RegExp(`model_hash: ${first.modelHash}`));
      assert.match(text, /block: 64/);
      // Even this short probe ranks head 1.0 first by induction.
      const top = retrievalScoresTable(first).find((r) => r.rank === 1)!;
      assert.deepEqual([top.layer, top.head], [1, 0]);
      const again = await retrievalProfile(engine, opts);
      assert.equal(again.computed, false);
      assert.deepEqual(again.layers, first.layers);
      assert.deepEqual(again.queryHeads, first.queryHeads);
      // Another block cap is another probe: recomputed.
      assert.equal((await retrievalProfile(engine, { ...opts, block: 32 })).computed, true);
      // A profile shipped beside the model is read (a copy of the cached one, now block 32).
      await Deno.copyFile(first.path!, `${dir}/${PROFILE_FILE}`);
      const shipped = await retrievalProfile(engine, { block: 32, cacheDir: `${cacheDir}/empty` });
      assert.equal(shipped.computed, false);
      assert.equal(shipped.path, `${dir}/${PROFILE_FILE}`);
      await Deno.remove(`${dir}/${PROFILE_FILE}`);
    } finally {
      engine.close();
    }
    // A changed config.json changes the model hash: recomputed and cached under the new hash.
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.chmod(`${dir}/config.json`, 0o644);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, note: "edited" }));
    engine = await Engine.open(dir);
    try {
      const changed = await retrievalProfile(engine, opts);
      assert.equal(changed.computed, true);
      assert.equal(changed.saved, true);
      assert.equal(changed.path, profilePath(await modelHash(dir), cacheDir));
      assert.match(
        await Deno.readTextFile(changed.path!),
        new RegExp(`model_hash: ${changed.modelHash}`),
      );
      assert.equal((await retrievalProfile(engine, opts)).computed, false);
    } finally {
      engine.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("planted-needle, 2048 tokens: the design card's policy keeps head 1.0 full and answers with a several-times smaller cache", async () => {
  const engine = await Engine.open(MODEL);
  try {
    const tok = engine.tokenizer!;
    const policy =
      "layers lazy -> window(sink=4, recent=60); heads retrieval -> full; else -> snap(k=256, pool=7)";
    const d = demoPrompt(tok, "copy", 2048, 1);
    const r = await runPolicy(engine, policy, d.ids, 8);
    const text = tok.decode(r.tokens, { skipSpecialTokens: true });
    assert.ok(text.includes(d.answer), `answer ${d.answer} not in "${text}"`);
    // Head 1.0 has by far the highest retrieval (induction) score and keeps the whole prompt.
    const scores = r.trace.flatMap((l) => l.heads.map((h) => h.retrieval_score!));
    assert.equal(scores.indexOf(Math.max(...scores)), 2, JSON.stringify(scores));
    assert.ok(scores[2] > 0.9, `head 1.0: ${scores[2]}`);
    assert.equal(r.trace[1].heads[0].pipeline, "full");
    assert.equal(r.trace[1].heads[0].kept.length, d.ids.length);
    assert.deepEqual(r.trace.map((l) => l.lazy), [true, false, true, true]);
    const ratio = r.kv.fullBytes / r.kv.keptBytes;
    console.log(
      `design card on planted-needle (${d.ids.length} tokens): ${ratio.toFixed(2)}× smaller`,
    );
    assert.ok(ratio > 3, `only ${ratio.toFixed(2)}× smaller`);
    // The selection itself: top 14 % by induction is head 1.0 alone.
    const layers = r.trace.map((l) => ({
      echo: l.heads.map((h) => h.echo_score!),
      induction: l.heads.map((h) => h.retrieval_score!),
    }));
    const byInduction = selectRetrievalHeads(layers, { induction: 0.14, echo: 0, top: null });
    assert.deepEqual(byInduction.flat().map((x, i) => x ? i : -1).filter((i) => i >= 0), [2]);
  } finally {
    engine.close();
  }
});

Deno.test("retrieval: without write permission the scores are computed and one warning is printed", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      new URL("./_retrievalNoWrite.ts", import.meta.url).pathname,
      MODEL,
    ],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", KVPOLICY_CACHE_DIR: "" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout), stderr = dec.decode(out.stderr);
  assert.equal(out.code, 0, stdout + stderr);
  assert.equal(stdout, "saved=false computed=true top=true\n".repeat(2));
  assert.equal(stderr.match(/could not cache the retrieval-head profile/g)?.length, 1, stderr);
  assert.match(stderr, /no write permission/);
});
