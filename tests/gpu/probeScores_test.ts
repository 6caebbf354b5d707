/**
 * probeScores (RazorAttention echo/induction accumulation) against the float64 CPU definition,
 * in process on the default adapter and in a subprocess per WebGPU backend (Vulkan and GL).
 */
import assert from "node:assert/strict";
import { checkProbeScores } from "./_probeScoresCheck.ts";
import { GPU_AVAILABLE, gpuTest } from "./_gpu.ts";

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(`probeScores ${dtype}: echo/induction equal retrievalQueryHeadScores`, async (ctx) => {
    const got = await checkProbeScores(ctx, dtype);
    // The planted heads dominate, so the comparison is not between near-zero numbers.
    assert.ok(got.induction[0] > 0.5 && got.echo[1] > 0.5, JSON.stringify(got));
    assert.ok(got.echo[0] < 0.2 && got.induction[1] < 0.2, JSON.stringify(got));
  });
}

// head_dim 256 over a 1,201-token probe: a query's score loop once ran 65 iterations per key
// (the head-dimension loop was not unrolled) and stopped at llvmpipe's 65535-iteration budget.
gpuTest(
  "probeScores at head_dim 256 over a 1,201-token probe (llvmpipe's loop budget)",
  async (ctx) => {
    const got = await checkProbeScores(ctx, "f32", {
      headDim: 256,
      block: 300,
      chunks: [300, 511],
    });
    assert.ok(got.induction[0] > 0.5 && got.echo[1] > 0.5, JSON.stringify(got));
  },
);

const SCRIPT = new URL("./_probeScoresCheck.ts", import.meta.url).pathname;

for (const backend of ["vulkan", "gl"]) {
  Deno.test({
    name: `probeScores on the ${backend} backend (subprocess)`,
    ignore: !GPU_AVAILABLE,
    async fn() {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-env", SCRIPT],
        env: { DENO_WEBGPU_BACKEND: backend, XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const dec = new TextDecoder();
      const output = dec.decode(out.stdout) + dec.decode(out.stderr);
      assert.equal(out.code, 0, output);
      assert.match(output, new RegExp(`^probe-scores ok backend=${backend} `, "m"), output);
    },
  });
}
