/**
 * The GPU kernel tests that store f16 weights or KV caches (their names say f16 / F16) again with
 * `KVPOLICY_KERNELS=f16=native` (f16 read as `array<vec4<f16>>` under `shader-f16`): the native
 * path passes the same tests as the packed default. The f32-only tests would compile and run the
 * same kernels twice, so they are filtered out. A subprocess, so that every device those tests
 * create picks the choice up. Ignored (with a message) on adapters without `shader-f16`.
 */
import assert from "node:assert/strict";
import { GPU_AVAILABLE } from "./_gpu.ts";

const HAS_F16 = GPU_AVAILABLE &&
  ((await navigator.gpu.requestAdapter())?.features.has("shader-f16") ?? false);
if (GPU_AVAILABLE && !HAS_F16) {
  console.warn("SKIP: the adapter has no shader-f16; the f16=native kernel tests are ignored.");
}

const DIR = new URL(".", import.meta.url).pathname;
// probeScores_test spawns backend subprocesses (GL has no shader-f16); this file is the runner.
const SKIP = new Set(["f16Native_test.ts", "probeScores_test.ts"]);
/** Test names that store f16 (BF16 is read as u32 words either way). */
const F16_TESTS = "/f16|[^B]F16/";

Deno.test({
  name: "GPU kernel tests of f16 storage pass with it read natively (KVPOLICY_KERNELS=f16=native)",
  ignore: !HAS_F16,
  async fn() {
    const files = [...Deno.readDirSync(DIR)]
      .map((e) => e.name)
      .filter((n) => n.endsWith("_test.ts") && !SKIP.has(n))
      .sort()
      .map((n) => DIR + n);
    assert.ok(files.length >= 15, `found ${files.length} test files`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        // The outer run type-checked these files already.
        "--no-check",
        "--allow-read",
        "--allow-env",
        "--allow-write",
        "--allow-run",
        `--filter=${F16_TESTS}`,
        ...files,
      ],
      env: { KVPOLICY_KERNELS: "f16=native", XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    const output = dec.decode(out.stdout) + dec.decode(out.stderr);
    assert.equal(out.code, 0, output.slice(-4000));
    const passed = Number(output.match(/^ok \| (\d+) passed/m)?.[1] ?? 0);
    assert.ok(passed >= 20, `${passed} f16 tests ran\n${output.slice(-2000)}`);
  },
});
