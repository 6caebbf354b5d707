/**
 * Both WebGPU backends Deno offers here (Mesa llvmpipe through Vulkan and through GL, chosen with
 * `DENO_WEBGPU_BACKEND`): a subprocess per backend runs `_backendCheck.ts`, which checks a
 * fixture's golden logits and greedy ids. Both must pass; an adapter missing in the environment
 * is a failure (CI installs both), reported with the subprocess's output.
 */
import assert from "node:assert/strict";
import { SHARED_DIR, sharedMissing } from "../_shared.ts";

const SCRIPT = new URL("./_backendCheck.ts", import.meta.url).pathname;
const FIXTURE = `${SHARED_DIR}/fixtures/llama-tied-linear-rope-f32`;

/** Runs the check script under `backend`; returns exit code and combined output. */
async function check(backend: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", SCRIPT, FIXTURE],
    env: { DENO_WEBGPU_BACKEND: backend, XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

for (const backend of ["vulkan", "gl"]) {
  Deno.test({
    name: `runtime: golden logits and greedy ids on the ${backend} backend`,
    ignore: sharedMissing(),
    async fn() {
      const { code, output } = await check(backend);
      assert.equal(code, 0, `DENO_WEBGPU_BACKEND=${backend} failed (exit ${code}):\n${output}`);
      assert.match(output, new RegExp(`^backend-check ok backend=${backend} `, "m"), output);
    },
  });
}
