/**
 * The GGUF reader against malformed input: a tiny valid Llama built by `ggufWriter.ts`, then
 * corrupted one field at a time (every case must be a ModelError naming the file and the field
 * or tensor), truncated at every length, fuzzed with random mutations, and run through the CLI.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ModelError } from "../../src/model/errors.ts";
import { readGgufHeader } from "../../src/model/ggufFile.ts";
import { loadGgufModel } from "../../src/model/ggufModel.ts";
import { openModel } from "../../src/model/openModel.ts";
import { runDeno, STACK_TRACE } from "../cli/_helpers.ts";
import {
  buildGguf,
  type GgufBytes,
  type GgufSpec,
  type MetaValue,
  type TensorSpec,
} from "./ggufWriter.ts";

const u32 = (v: number): MetaValue => ({ t: "u32", v });
const str = (v: string): MetaValue => ({ t: "string", v });
const list = (of: "string" | "f32" | "i32", v: (string | number)[]): MetaValue => ({
  t: "array",
  of,
  v: v.map((x) => (typeof x === "string" ? str(x) : { t: of, v: x }) as MetaValue),
});

/** Deterministic finite tensor data: F32 and F16 small values, Q8_0 blocks with a 1/16 scale. */
function tensor(name: string, dims: number[], type: "F32" | "F16" | "Q8_0" = "F32"): TensorSpec {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(type === "F32" ? 4 * n : type === "F16" ? 2 * n : (n / 32) * 34);
  const view = new DataView(data.buffer);
  for (let i = 0; i < n; i++) {
    if (type === "F32") view.setFloat32(4 * i, ((i % 7) - 3) / 8, true);
    else if (type === "F16") view.setUint16(2 * i, [0x3c00, 0xb800, 0x3400][i % 3], true);
    else if (i % 32 === 0) view.setUint16((i / 32) * 34, 0x2c00, true);
    if (type === "Q8_0") view.setInt8((i >> 5) * 34 + 2 + (i % 32), (i % 9) - 4);
  }
  return { name, dims, type, data };
}

/** A valid 1-layer Llama (hidden 8, 2 heads of 4, 1 KV head) with one value of every type. */
function tinySpec(): GgufSpec {
  return {
    metadata: [
      ["general.architecture", str("llama")],
      ["general.alignment", u32(32)],
      ["llama.block_count", u32(1)],
      ["llama.context_length", u32(32)],
      ["llama.embedding_length", u32(8)],
      ["llama.feed_forward_length", u32(16)],
      ["llama.attention.head_count", u32(2)],
      ["llama.attention.head_count_kv", u32(1)],
      ["llama.attention.key_length", u32(4)],
      ["llama.attention.layer_norm_rms_epsilon", { t: "f32", v: 1e-5 }],
      ["llama.rope.freq_base", { t: "f32", v: 10000 }],
      ["test.u8", { t: "u8", v: 200 }],
      ["test.i8", { t: "i8", v: -5 }],
      ["test.u16", { t: "u16", v: 60000 }],
      ["test.i16", { t: "i16", v: -300 }],
      ["test.i32", { t: "i32", v: -70000 }],
      ["test.u64", { t: "u64", v: 2n ** 60n }],
      ["test.i64", { t: "i64", v: -2n }],
      ["test.f64", { t: "f64", v: 0.25 }],
      ["test.bool", { t: "bool", v: true }],
      ["tokenizer.ggml.model", str("llama")],
      ["tokenizer.ggml.tokens", list("string", ["<unk>", "<s>", "</s>", "a"])],
      ["tokenizer.ggml.scores", list("f32", [0, 0, 0, -1])],
      ["tokenizer.ggml.token_type", list("i32", [2, 3, 3, 1])],
    ],
    tensors: [
      tensor("token_embd.weight", [8, 4]),
      tensor("blk.0.attn_norm.weight", [8]),
      tensor("blk.0.attn_q.weight", [8, 8], "Q8_0"),
      tensor("blk.0.attn_k.weight", [8, 4], "F16"),
      tensor("blk.0.attn_v.weight", [8, 4]),
      tensor("blk.0.attn_output.weight", [8, 8], "F16"),
      tensor("blk.0.ffn_norm.weight", [8]),
      tensor("blk.0.ffn_gate.weight", [8, 16], "F16"),
      tensor("blk.0.ffn_up.weight", [8, 16]),
      tensor("blk.0.ffn_down.weight", [16, 8], "Q8_0"),
      tensor("output_norm.weight", [8]),
    ],
  };
}

/** The tiny spec with `edit` applied to a copy. */
function tiny(edit: (spec: GgufSpec) => void = () => {}): Uint8Array {
  const spec = tinySpec();
  edit(spec);
  return buildGguf(spec).bytes;
}

/** Edits the tensor named `name` in `spec`. */
function withTensor(spec: GgufSpec, name: string, patch: Partial<TensorSpec>): void {
  const i = spec.tensors.findIndex((t) => t.name === name);
  spec.tensors[i] = { ...spec.tensors[i], ...patch };
}

/** A file with one metadata pair whose `u64Index`-th u64 (0: tensor_count) is set to `value`. */
function oneKey(key: string, value: MetaValue, u64Index: number, patched: bigint): Uint8Array {
  const { bytes, u64At } = buildGguf({ metadata: [[key, value]], tensors: [] });
  new DataView(bytes.buffer).setBigUint64(u64At[u64Index], patched, true);
  return bytes;
}

const dir = await Deno.makeTempDir({ prefix: "kvpolicy-gguf-bad-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** Writes `bytes` to `dir/NAME.gguf` and returns the path. */
async function write(name: string, bytes: Uint8Array): Promise<string> {
  const file = `${dir}/${name}.gguf`;
  await Deno.writeFile(file, bytes);
  return file;
}

/** Asserts that `run(file)` throws a ModelError naming `file` and containing each of `parts`. */
async function assertModelError(
  run: (file: string) => Promise<unknown>,
  file: string,
  parts: string[],
): Promise<string> {
  try {
    await run(file);
  } catch (error) {
    assert.ok(error instanceof ModelError, `not a ModelError: ${(error as Error).stack}`);
    assert.ok(error.message.includes(file), `message does not name the file: ${error.message}`);
    for (const part of parts) {
      assert.ok(error.message.includes(part), `"${part}" not in: ${error.message}`);
    }
    return error.message;
  }
  assert.fail(`${file}: no error (expected one mentioning ${parts.join(", ")})`);
}

const header = (file: string) => readGgufHeader(file);
const load = (file: string) => loadGgufModel(file);
const V = "blk.0.attn_v.weight";

/** The tiny file with tensor `name` patched. */
const tensorEdit = (name: string, patch: Partial<TensorSpec>) => () =>
  tiny((s) => withTensor(s, name, patch));

/** The tiny file with metadata `key` set to `value`, or removed. */
const metaEdit = (key: string, value?: MetaValue) => () =>
  tiny((s) => {
    const i = s.metadata.findIndex(([k]) => k === key);
    if (value === undefined) s.metadata.splice(i, 1);
    else s.metadata[i][1] = value;
  });

/** name, bytes, expected message parts, and whether only the model mapping catches it. */
type Case = [string, () => Uint8Array, string[], "load"?];

const CASES: Case[] = [
  ["bad magic", () => tiny((s) => s.magic = 0x46554748), ["magic"]],
  ["version 1", () => tiny((s) => s.version = 1), ["version 1"]],
  ["version 4", () => tiny((s) => s.version = 4), ["version 4"]],
  ["empty file", () => new Uint8Array(0), ["too short"]],
  ["shorter than the header", () => tiny().slice(0, 20), ["too short"]],
  ["tensor data beyond the end", () => tiny().slice(0, -4), ['"output_norm.weight"', "beyond"]],
  [
    "overlapping tensors",
    tensorEdit("blk.0.attn_norm.weight", { offset: 32 }),
    ['"token_embd.weight" and "blk.0.attn_norm.weight" overlap'],
  ],
  [
    "offset not a multiple of the alignment",
    tensorEdit("blk.0.attn_norm.weight", { offset: 136 }),
    ['"blk.0.attn_norm.weight" offset 136', "alignment 32"],
  ],
  ["unknown ggml type 99", tensorEdit(V, { type: 99 }), [`"${V}" has ggml type 99`]],
  ["unsupported type Q8_K (15)", tensorEdit(V, { type: 15 }), [`"${V}" has ggml type Q8_K`]],
  ["zero dimension", tensorEdit(V, { dims: [0, 4] }), [`"${V}" has dimensions [0, 4]`]],
  ["dimension 2^40", tensorEdit(V, { dims: [2n ** 40n, 8] }), [`"${V}"`, "1099511627776"]],
  ["dimension 2^62", tensorEdit(V, { dims: [2n ** 62n] }), [`"${V}" dimension 0`, "absurdly"]],
  ["0 dimensions", tensorEdit(V, { dims: [] }), [`"${V}" has 0 dimensions`]],
  ["5 dimensions", tensorEdit(V, { dims: [2, 2, 2, 2, 2] }), [`"${V}" has 5 dimensions`]],
  [
    "string length 2^60",
    () => oneKey("bad.string", str("abc"), 3, 2n ** 60n),
    ['"bad.string" length', "absurdly large"],
  ],
  [
    "string longer than the bytes left",
    () => oneKey("bad.string", str("abc"), 3, 1000n),
    ['"bad.string" is 1000 bytes long', "truncated"],
  ],
  [
    "array length 2^50",
    () => oneKey("bad.array", list("i32", [1]), 3, 2n ** 50n),
    ['"bad.array" array length', String(2 ** 50)],
  ],
  [
    "nested arrays",
    () => oneKey("bad.nested", { t: "array", of: "array", v: [list("i32", [])] }, 0, 0n),
    ['"bad.nested" is an array of arrays'],
  ],
  ["bool holding 2", metaEdit("test.bool", { t: "bool", v: 2 }), [
    '"test.bool" is a bool holding 2',
  ]],
  [
    "invalid UTF-8 in a key",
    () => tiny((s) => s.metadata[3][0] = new Uint8Array([0x6b, 0xff, 0xfe])),
    ["metadata key #3 is not valid UTF-8"],
  ],
  [
    "duplicate metadata keys",
    () => tiny((s) => s.metadata.push(["test.u8", u32(1)])),
    ['"test.u8" appears twice'],
  ],
  [
    "duplicate tensor names",
    () => tiny((s) => s.tensors.push(tensor("blk.0.ffn_norm.weight", [8]))),
    ['"blk.0.ffn_norm.weight" appears twice'],
  ],
  ["alignment 24", metaEdit("general.alignment", u32(24)), [
    '"general.alignment" 24 is not a power',
  ]],
  ["alignment 0", metaEdit("general.alignment", u32(0)), ['"general.alignment" must be']],
  [
    "architecture gpt2",
    metaEdit("general.architecture", str("gpt2")),
    ['"general.architecture" "gpt2" is not supported'],
    "load",
  ],
  [
    "missing block_count",
    metaEdit("llama.block_count"),
    ['"llama.block_count"', "missing"],
    "load",
  ],
  ...["block_count", "attention.head_count", "attention.key_length"].map((key): Case => [
    `${key} 2^31`,
    metaEdit(`llama.${key}`, u32(2 ** 31)),
    [`"llama.${key}" is 2147483648`],
    "load",
  ]),
  [
    "tensor shape disagrees with the config",
    tensorEdit(V, tensor(V, [8, 5])),
    [`"${V}" has shape [5, 8]`, "implies [4, 8]"],
    "load",
  ],
  [
    "Q rows not a multiple of the heads (checked before un-permuting)",
    tensorEdit("blk.0.attn_q.weight", tensor("blk.0.attn_q.weight", [8, 3])),
    ['"blk.0.attn_q.weight" has shape [3, 8]', "implies [8, 8]"],
    "load",
  ],
];

Deno.test("gguf reader: the tiny file is valid and every value type reads back", async () => {
  const file = await write("valid", tiny());
  const { metadata, tensors } = await readGgufHeader(file);
  assert.equal(metadata.get("test.u8"), 200);
  assert.equal(metadata.get("test.i16"), -300);
  assert.equal(metadata.get("test.u64"), 2n ** 60n);
  assert.equal(metadata.get("test.i64"), -2n);
  assert.equal(metadata.get("test.bool"), true);
  assert.deepEqual(metadata.get("tokenizer.ggml.tokens"), ["<unk>", "<s>", "</s>", "a"]);
  assert.deepEqual(tensors.map((t) => t.type).slice(2, 4), ["Q8_0", "F16"]);
  const { weights } = await loadGgufModel(file);
  assert.equal(weights.config.numLayers, 1);
  assert.deepEqual(weights.get("model.layers.0.mlp.down_proj.weight").shape, [8, 16]);
});

for (const [name, bytes, parts, via] of CASES) {
  Deno.test(`gguf reader refuses: ${name}`, async () => {
    const file = await write(name.replace(/\W+/g, "-"), bytes());
    // Header faults are caught by both entry points; mapping faults only by the loader.
    if (via !== "load") await assertModelError(header, file, parts);
    await assertModelError(load, file, parts);
  });
}

Deno.test("gguf reader: absurd tensor_count / metadata_kv_count fail fast, allocating nothing", async () => {
  for (const [field, index] of [["tensor_count", 0], ["metadata_kv_count", 1]] as const) {
    const { bytes, u64At } = buildGguf(tinySpec());
    new DataView(bytes.buffer).setBigUint64(u64At[index], 2n ** 50n, true);
    const file = await write(field, bytes);
    const rss = Deno.memoryUsage().rss;
    const start = performance.now();
    await assertModelError(header, file, [field, String(2 ** 50)]);
    await assertModelError(load, file, [field]);
    assert.ok(performance.now() - start < 1000, `${field}: took ${performance.now() - start} ms`);
    const grown = Deno.memoryUsage().rss - rss;
    assert.ok(grown < 50 * 2 ** 20, `${field}: rss grew by ${grown} bytes`);
  }
});

Deno.test("gguf reader: truncation at every length is a ModelError naming the file", async () => {
  const bytes = tiny();
  const file = `${dir}/truncated.gguf`;
  for (let length = 0; length < bytes.length; length++) {
    await Deno.writeFile(file, bytes.subarray(0, length));
    const message = await assertModelError(header, file, []);
    if (length >= 24) {
      assert.match(
        message,
        /tensor_count|metadata_kv_count|metadata (key #\d+|"[^"]+")|tensor (#\d+|"[^"]+")/,
      );
    }
  }
});

Deno.test("gguf reader: a FIFO or a folder named x.gguf is refused without hanging", async (t) => {
  const folder = `${dir}/folder.gguf`;
  await Deno.mkdir(folder);
  await assertModelError(header, folder, ["not a regular file"]);
  await assertModelError(openModel, folder, []);
  const fifo = `${dir}/fifo.gguf`;
  let made = false;
  try {
    made = (await new Deno.Command("mkfifo", { args: [fifo] }).output()).success;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await t.step({
    name: made ? "FIFO" : "FIFO (skipped: no mkfifo on this machine)",
    ignore: !made,
    fn: async () => {
      await assertModelError(header, fifo, ["not a regular file"]);
      await assertModelError(load, fifo, ["not a regular file"]);
      await assertModelError(openModel, fifo, ["not a file or a folder"]);
    },
  });
});

/** One random edit of a file. */
type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "byte"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "field"; wide: boolean; index: number; value: bigint };

/** Values that overwrite a u32 or u64 field (a u32 takes the low 32 bits). */
const HUGE = [2n ** 64n - 1n, 2n ** 63n, 2n ** 62n, 2n ** 53n, 2n ** 50n, 2n ** 40n, 2n ** 31n];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant("byte" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  }),
  fc.record({
    kind: fc.constant("field" as const),
    wide: fc.boolean(),
    index: fc.nat(),
    value: fc.oneof(fc.constantFrom(...HUGE), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  }),
);

/** Applies `edits` to a copy of a built file (field edits at the positions it recorded). */
function mutate({ bytes: original, u32At, u64At }: GgufBytes, edits: Mutation[]): Uint8Array {
  let bytes = original.slice();
  for (const e of edits) {
    if (e.kind === "field") {
      const fields = e.wide ? u64At : u32At;
      const at = fields[e.index % fields.length];
      const view = new DataView(bytes.buffer);
      if (e.wide && at + 8 <= bytes.length) view.setBigUint64(at, e.value, true);
      if (!e.wide && at + 4 <= bytes.length) view.setUint32(at, Number(e.value % 2n ** 32n), true);
      continue;
    }
    const at = e.at % (bytes.length + 1);
    if (e.kind === "flip" && at < bytes.length) bytes[at] ^= 1 << e.bit;
    else if (e.kind === "byte" && at < bytes.length) bytes[at] = e.value;
    else if (e.kind === "truncate") bytes = bytes.slice(0, at);
    else if (e.kind === "insert") {
      bytes = Uint8Array.from([...bytes.subarray(0, at), ...e.bytes, ...bytes.subarray(at)]);
    }
  }
  return bytes;
}

/** Runs `fn`: true if it succeeds, false for a ModelError naming `file`; anything else throws. */
async function modelErrorOrSuccess(fn: () => Promise<unknown>, file: string): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (error) {
    if (!(error instanceof ModelError)) throw error;
    assert.ok(error.message.includes(file), error.message);
    return false;
  }
}

Deno.test("gguf reader fuzz: mutated files either load or give a ModelError", async () => {
  const built = buildGguf(tinySpec());
  const file = `${dir}/fuzz.gguf`;
  let cases = 0, loaded = 0;
  const start = performance.now();
  // A time budget that never cuts a case short (fast-check's interruptAfterTimeLimit abandons the
  // running case, leaving its file operations pending): past 20 s the remaining runs do nothing.
  const deadline = start + 20_000;
  await fc.assert(
    fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (edits) => {
      if (performance.now() > deadline) return;
      await Deno.writeFile(file, mutate(built, edits));
      await modelErrorOrSuccess(() => readGgufHeader(file), file);
      if (await modelErrorOrSuccess(() => loadGgufModel(file), file)) loaded++;
      cases++;
    }),
    { numRuns: 8000 },
  );
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  console.log(`gguf fuzz: ${cases} mutated files (${loaded} still load) in ${seconds} s`);
  assert.ok(cases >= 1000, `only ${cases} cases ran in the time limit`);
});

Deno.test("gguf reader: the CLI prints a corrupt file's ModelError without a stack trace", async () => {
  const file = await write("cli-corrupt", tiny().slice(0, 300));
  const run = await runDeno(["task", "-q", "run", "--model", file, "--prompt", "hi"]);
  assert.equal(run.code, 1, run.stderr);
  assert.ok(run.stderr.includes(file), run.stderr);
  assert.match(run.stderr, /tensor_count is 11/);
  assert.doesNotMatch(run.stderr, STACK_TRACE);
  assert.doesNotMatch(run.stderr, /^\s+at /m);
});
