/**
 * Cold shader-compile cost, kernel by kernel, and a command's first run end to end (issue: a
 * newcomer's first run).
 *
 *   deno run -A bench/coldCompile.ts [--backend vulkan|gl] -- run --policy "else -> snap(k=64)"
 *   deno run -A bench/coldCompile.ts --end-to-end [-- <task args>]
 *
 * With `--end-to-end`, runs `deno task <task args>` (default: README's main command) twice as a
 * user would, first with an empty Mesa shader cache and then with the cache it left, and prints
 * both wall times and the compile progress lines of the first run.
 *
 * Runs the given CLI command once in this process and records every compute pipeline it creates
 * (key and WGSL). Then, in a child process with an empty Mesa shader cache, compiles each one on
 * its own: creation, then an indirect dispatch of zero workgroups (llvmpipe compiles a shader at
 * its first dispatch; zero workgroups run nothing), timed to a readback. Prints the kernels by
 * cost and the total. Mesa keys its cache by the shader, so the child's cache starts empty.
 *
 * @module
 */

import { acquireDevice, GpuContext } from "../src/gpu/device.ts";

interface Recorded {
  key: string;
  wgsl: string;
}

const args = [...Deno.args];
if (args[0] === "--probe") await probe(args[1]);
else if (args[0] === "--end-to-end") await endToEnd(args.slice(1));
else await collectAndProbe(args);

async function endToEnd(argv: string[]): Promise<void> {
  const sep = argv.indexOf("--");
  const task = sep < 0 ? ["run", "--policy", "else -> snap(k=64, pool=21)"] : argv.slice(sep + 1);
  const cache = await Deno.makeTempDir({ prefix: "mesa-cold-" });
  try {
    for (const label of ["empty shader cache", "warm shader cache"]) {
      const t0 = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", ...task],
        env: { MESA_SHADER_CACHE_DIR: cache, NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const s = (performance.now() - t0) / 1000;
      const stderr = new TextDecoder().decode(out.stderr);
      console.log(`deno task ${task.join(" ")}: ${label}: ${s.toFixed(1)} s, exit ${out.code}`);
      for (const line of stderr.split("\n").filter((l) => l.startsWith("compiling GPU"))) {
        console.log(`  ${line}`);
      }
    }
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

async function collectAndProbe(argv: string[]): Promise<void> {
  const sep = argv.indexOf("--");
  const opts = sep < 0 ? argv : argv.slice(0, sep);
  const command = sep < 0
    ? ["run", "--policy", "else -> snap(k=64, pool=21)"]
    : argv.slice(sep + 1);
  const backend = opts[opts.indexOf("--backend") + 1] ?? "vulkan";
  const recorded: Recorded[] = [];
  const original = GpuContext.prototype.pipeline;
  GpuContext.prototype.pipeline = function (this: GpuContext, key: string, code: () => string) {
    if (!recorded.some((r) => r.key === key)) recorded.push({ key, wgsl: code() });
    return original.call(this, key, code);
  };
  const { main } = await import("../src/cli/main.ts");
  const rc = await main(command);
  if (rc !== 0) throw new Error(`the command exited with ${rc}`);
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(recorded));
  const cache = await Deno.makeTempDir({ prefix: "mesa-cold-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, "--probe", file],
    env: { MESA_SHADER_CACHE_DIR: cache, DENO_WEBGPU_BACKEND: backend },
  });
  const out = await child.output();
  await Deno.stdout.write(out.stdout);
  await Deno.stderr.write(out.stderr);
  await Deno.remove(cache, { recursive: true });
  await Deno.remove(file);
}

/** `@group(0) @binding(n) var<space[, access]>` declarations of a WGSL module. */
function bindings(wgsl: string): { binding: number; uniform: boolean }[] {
  const re = /@binding\((\d+)\)\s*var<(\w+)/g;
  return [...wgsl.matchAll(re)].map((m) => ({ binding: +m[1], uniform: m[2] === "uniform" }));
}

async function probe(file: string): Promise<void> {
  const recorded: Recorded[] = JSON.parse(await Deno.readTextFile(file));
  const ctx = await acquireDevice();
  const device = ctx.device;
  const indirect = device.createBuffer({ size: 16, usage: GPUBufferUsage.INDIRECT });
  const rows: { key: string; create: number; compile: number; lines: number }[] = [];
  const dummies: GPUBuffer[] = [];
  for (const { key, wgsl } of recorded) {
    const t0 = performance.now();
    const module = device.createShaderModule({
      code: wgsl.includes("<f16>") ? `enable f16;\n${wgsl}` : wgsl,
    });
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const t1 = performance.now();
    device.pushErrorScope("validation");
    const entries = bindings(wgsl).map(({ binding, uniform }) => {
      const buffer = device.createBuffer({
        size: 1 << 16,
        usage: uniform ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE,
      });
      dummies.push(buffer);
      return { binding, resource: { buffer } };
    });
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroupsIndirect(indirect, 0);
    pass.end();
    device.queue.submit([enc.finish()]);
    await ctx.sync();
    const err = await device.popErrorScope();
    if (err) console.error(`${key}: ${err.message}`);
    rows.push({
      key,
      create: t1 - t0,
      compile: performance.now() - t1,
      lines: wgsl.split("\n").length,
    });
  }
  rows.sort((a, b) => b.create + b.compile - a.create - a.compile);
  const total = rows.reduce((s, r) => s + r.create + r.compile, 0);
  console.log(`${rows.length} pipelines, ${(total / 1000).toFixed(1)} s cold in all`);
  console.log("create ms  dispatch ms  WGSL lines  key");
  for (const r of rows) {
    console.log(
      `${r.create.toFixed(0).padStart(9)}  ${r.compile.toFixed(0).padStart(11)}  ` +
        `${String(r.lines).padStart(10)}  ${r.key}`,
    );
  }
  for (const b of dummies) b.destroy();
  ctx.destroy();
}
