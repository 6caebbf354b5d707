import assert from "node:assert/strict";
import { compileOrThrow } from "../../src/plan/compile.ts";
import { defaultRegistry } from "../../src/plugins/builtins.ts";
import { loadPlugins, PluginLoadError, resolvePluginUrl } from "../../src/plugins/loadPlugins.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;

Deno.test("the example plugins register through the public API and check like built-ins", async () => {
  const registry = defaultRegistry();
  const names = await loadPlugins(
    [
      resolvePluginUrl("./lastQueryPress.ts", EXAMPLES),
      resolvePluginUrl("sinkDetector.ts", EXAMPLES),
    ],
    registry,
  );
  assert.deepEqual(names, ["lastq", "sinky"]);
  const plan = compileOrThrow(
    "layers sinky(threshold=0.6) -> window(sink=4, recent=64); else -> lastq(k=10%)",
    "<p>",
    registry,
  );
  assert.deepEqual(plan.rules[1].pipeline[0].params, { k: { fraction: 0.1 } });
  assert.deepEqual(plan.detectors, [{ name: "sinky", params: { threshold: 0.6, sink: 4 } }]);
  assert.throws(
    () => compileOrThrow("else -> lastq(k=0)", "<p>", registry),
    /'k' must keep at least 1 entry/,
  );
});

Deno.test("bad plugin modules give clear errors naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = (name: string, text: string) => Deno.writeTextFileSync(`${dir}/${name}`, text);
    write("empty.ts", "export const nothing = 1;\n");
    write("broken.ts", "export const plugins = [;\n");
    write(
      "noselect.ts",
      'export const plugins = [{ kind: "press", name: "x", role: "select", when: "prefill", params: [], doc: "" }];\n',
    );
    write(
      "clash.ts",
      'export const plugins = [{ kind: "press", name: "snap", role: "store", when: "prefill", params: [], doc: "" }];\n',
    );
    const load = (f: string) => loadPlugins([resolvePluginUrl(f, dir)], defaultRegistry());
    await assert.rejects(
      load("empty.ts"),
      (e) => e instanceof PluginLoadError && /exports no plugins/.test(e.message),
    );
    await assert.rejects(load("broken.ts"), /cannot load plugin .*broken\.ts/);
    await assert.rejects(load("noselect.ts"), /press 'x' selects entries but has no select\(\)/);
    await assert.rejects(load("clash.ts"), /a press named 'snap' is already registered/);
    assert.throws(() => resolvePluginUrl("missing.ts", dir), /'missing\.ts': no such file/);
    assert.throws(() => resolvePluginUrl("https://example.com/p.ts", dir), /only local files load/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lastq keeps, per KV head, the top of its group's mean last-query attention", async () => {
  const { selectLastQuery } = await import("../../examples/lastQueryPress.ts");
  // Four query heads in two groups of two, five positions. Group means:
  // KV head 0: [0.05, 0.3, 0.1, 0.35, 0.2]; KV head 1: [0.4, 0.1, 0.3, 0.1, 0.1].
  const heads = [
    new Float32Array([0.1, 0.2, 0.1, 0.4, 0.2]),
    new Float32Array([0, 0.4, 0.1, 0.3, 0.2]),
    new Float32Array([0.5, 0.1, 0.2, 0.1, 0.1]),
    new Float32Array([0.3, 0.1, 0.4, 0.1, 0.1]),
  ];
  const kept = selectLastQuery(
    { promptLength: 5, numKvHeads: 2, groupSize: 2, windowAttention: () => heads },
    3,
  );
  assert.deepEqual(kept, [[1, 3, 4], [0, 1, 2]]);
});

Deno.test("sinky flags layers whose last query rests on the first tokens", async () => {
  const { classifySinkLayers } = await import("../../examples/sinkDetector.ts");
  const attention = [
    [new Float32Array([0.5, 0.3, 0, 0.2]), new Float32Array([0.9, 0, 0, 0.1])], // mass on sink 2: 0.8, 0.9
    [new Float32Array([0.1, 0, 0.5, 0.4]), new Float32Array([0.2, 0.1, 0.3, 0.4])], // 0.1, 0.3
  ];
  const verdict = await classifySinkLayers({
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    promptLength: 4,
    lastQueryAttention: (l: number) => Promise.resolve(attention[l]),
  }, { threshold: 0.5, sink: 2 });
  assert.deepEqual(verdict, [true, false]);
});

Deno.test("plugin paths are an allow-list: URL schemes in any case, folders, FIFOs, non-modules", async () => {
  const dir = await Deno.makeTempDir();
  try {
    Deno.writeTextFileSync(`${dir}/p.ts`, "export const plugins = [];\n");
    Deno.writeTextFileSync(`${dir}/notes.txt`, "x");
    Deno.mkdirSync(`${dir}/folder.ts`);
    Deno.symlinkSync(`${dir}/p.ts`, `${dir}/link.ts`);
    new Deno.Command("mkfifo", { args: [`${dir}/fifo.ts`] }).outputSync();
    const schemes = ["npm", "jsr", "http", "https", "data", "file", "blob", "node", "ftp", "c"];
    for (const scheme of schemes) {
      for (
        const spelled of [scheme, scheme.toUpperCase(), scheme[0].toUpperCase() + scheme.slice(1)]
      ) {
        for (const rest of ["x", "//example.com/p.ts", "text/javascript,export default 1"]) {
          assert.throws(
            () => resolvePluginUrl(`${spelled}:${rest}`, dir),
            (e) => e instanceof PluginLoadError && /only local files load/.test(e.message),
            `${spelled}:${rest}`,
          );
        }
      }
    }
    assert.throws(() => resolvePluginUrl("folder.ts", dir), /is not a regular file/);
    assert.throws(() => resolvePluginUrl("fifo.ts", dir), /is not a regular file/);
    assert.throws(() => resolvePluginUrl("notes.txt", dir), /a \.ts, \.mts, \.js or \.mjs module/);
    assert.throws(() => resolvePluginUrl("", dir), /not a file path/);
    // a link resolves to the file it names; relative and absolute paths both work
    const real = Deno.realPathSync(`${dir}/p.ts`);
    assert.equal(resolvePluginUrl("link.ts", dir).pathname, real);
    assert.equal(resolvePluginUrl(`${dir}/p.ts`, "/").pathname, real);
    assert.equal(resolvePluginUrl("../p.ts", `${dir}/folder.ts`).pathname, real);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
