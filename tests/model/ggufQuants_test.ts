import { PYTHON } from "../_python.ts";
import assert from "node:assert/strict";
import {
  dequantize,
  ggmlBlockSize,
  ggmlTensorBytes,
  isSupportedGgmlType,
  toBlockInt8,
} from "../../src/model/ggufQuants.ts";
import { blockInt8ToFloat32 } from "../../src/model/blockInt8.ts";
import { GGML_TYPES, type GgmlTypeName } from "../../src/model/ggufTypes.ts";

const REFERENCE_SCRIPT = new URL("./gguf_dequant_reference.py", import.meta.url).pathname;
const SUPPORTED = (Object.keys(GGML_TYPES) as GgmlTypeName[]).filter(isSupportedGgmlType);

/** Why `gguf.quants` cannot run here (a SKIP line is printed), or null when it can. */
function referenceMissing(): string | null {
  let why: string | null = null;
  try {
    const probe = new Deno.Command(PYTHON, {
      args: ["-c", "import gguf.quants"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    if (!probe.success) why = "the Python gguf package is not installed (pip install gguf)";
  } catch (error) {
    why = `python3 cannot be run (${(error as Error).message})`;
  }
  if (why) console.warn(`SKIP: ${why}; the comparison with gguf.quants.dequantize is ignored.`);
  return why;
}

/** Asserts that `actual` holds exactly the float32 bit patterns of `expected`, and no NaN. */
function assertSameBits(actual: Float32Array, expected: Float32Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(!Number.isNaN(actual[i]), `${label}[${i}] is NaN`);
    if (a[i] !== e[i]) {
      assert.fail(
        `${label}[${i}]: got ${actual[i]} (0x${a[i].toString(16)}), ` +
          `want ${expected[i]} (0x${e[i].toString(16)})`,
      );
    }
  }
}

/** `data` copied to byte offset 1 of a larger buffer (no aligned typed-array view possible). */
function unaligned(data: Uint8Array): Uint8Array {
  const padded = new Uint8Array(data.length + 3);
  padded.set(data, 1);
  return padded.subarray(1, 1 + data.length);
}

/** Deterministic pseudo-random bytes (xorshift32). */
function pseudoRandomBytes(count: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(count);
  let x = seed;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

Deno.test({
  name: "ggufQuants: every supported type matches gguf.quants.dequantize bit for bit",
  ignore: referenceMissing() !== null,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-gguf-quants-" });
    try {
      const run = await new Deno.Command(PYTHON, { args: [REFERENCE_SCRIPT, dir] }).output();
      assert.ok(run.success, new TextDecoder().decode(run.stderr));
      const index: Record<string, number> = JSON.parse(
        await Deno.readTextFile(`${dir}/index.json`),
      );
      assert.deepEqual(Object.keys(index).sort(), [...SUPPORTED].sort(), "types covered");
      for (const [name, count] of Object.entries(index)) {
        await t.step(name, async () => {
          const type = name as GgmlTypeName;
          const raw = await Deno.readFile(`${dir}/${name}.raw`);
          const expected = new Float32Array((await Deno.readFile(`${dir}/${name}.f32`)).buffer);
          assert.equal(raw.length, ggmlTensorBytes(type, count), "reference byte size");
          assertSameBits(dequantize(type, raw, count), expected, name);
          assertSameBits(dequantize(type, unaligned(raw), count), expected, `${name} unaligned`);
          // The runtime's block-int8 form of the same data decodes to the same bits.
          const blocks = toBlockInt8(type, raw, count);
          if (blocks === null) assert.ok(["F32", "F16", "BF16"].includes(type), name);
          else {
            assert.equal(blocks.dtype, /^Q[236]_K$/.test(type) ? "I8x16" : "I8x32", name);
            assertSameBits(blockInt8ToFloat32(blocks.dtype, blocks.data), expected, `${name} i8`);
          }
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("ggufQuants: Q8_0 by hand, x = q * d with d an f16", () => {
  // block_q8_0: f16 d = 0x3555 = 0.25 * (1 + 341/1024), then int8 q[32].
  const block = new DataView(new ArrayBuffer(34));
  block.setUint16(0, 0x3555, true);
  const q = Array.from({ length: 32 }, (_, i) => i - 16);
  q[0] = -128;
  q[31] = 127;
  q.forEach((v, i) => block.setInt8(2 + i, v));
  const d = 0.25 * (1 + 341 / 1024);
  const expected = Float32Array.from(q, (v) => Math.fround(v * d));
  assertSameBits(dequantize("Q8_0", new Uint8Array(block.buffer), 32), expected, "Q8_0");
});

Deno.test("ggufQuants: Q4_1 by hand, x = d * q + m with d and m f16", () => {
  // block_q4_1: f16 d = 0x2e66 = 2^-4 * (1 + 614/1024), f16 m = 0xc500 = -5, then 16 bytes whose
  // low nibbles are elements 0..15 and high nibbles elements 16..31.
  const block = new DataView(new ArrayBuffer(20));
  block.setUint16(0, 0x2e66, true);
  block.setUint16(2, 0xc500, true);
  for (let j = 0; j < 16; j++) block.setUint8(4 + j, j | ((15 - j) << 4));
  const d = 2 ** -4 * (1 + 614 / 1024);
  const q = Array.from({ length: 32 }, (_, i) => (i < 16 ? i : 31 - i));
  const expected = Float32Array.from(q, (v) => Math.fround(d * v - 5));
  assertSameBits(dequantize("Q4_1", new Uint8Array(block.buffer), 32), expected, "Q4_1");
});

Deno.test("ggufQuants: block sizes follow ggml-common.h", () => {
  assert.deepEqual(ggmlBlockSize("F32"), { elements: 1, bytes: 4 });
  assert.deepEqual(ggmlBlockSize("F16"), { elements: 1, bytes: 2 });
  assert.deepEqual(ggmlBlockSize("BF16"), { elements: 1, bytes: 2 });
  assert.deepEqual(ggmlBlockSize("Q8_0"), { elements: 32, bytes: 34 });
  assert.deepEqual(ggmlBlockSize("Q4_1"), { elements: 32, bytes: 20 });
  assert.deepEqual(ggmlBlockSize("Q4_K"), { elements: 256, bytes: 144 });
  assert.deepEqual(ggmlBlockSize("Q6_K"), { elements: 256, bytes: 210 });
  assert.equal(ggmlTensorBytes("Q4_K", 512), 288);
  assert.equal(ggmlTensorBytes("F16", 3), 6);
  assert.equal(ggmlTensorBytes("Q5_0", 0), 0);
});

Deno.test("ggufQuants: supported types", () => {
  for (const name of ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K"]) {
    assert.ok(isSupportedGgmlType(name), name);
  }
  for (const name of ["Q5_K", "Q6_K", "Q2_K", "Q3_K"]) assert.ok(isSupportedGgmlType(name), name);
  for (const name of ["Q8_1", "Q8_K", "IQ2_XS", "toString", ""]) {
    assert.ok(!isSupportedGgmlType(name), name);
  }
  assert.throws(() => dequantize("Q8_K", new Uint8Array(292), 256), /cannot be dequantized/);
});

Deno.test("ggufQuants: a wrong byte length or a partial block throws", () => {
  assert.throws(() => dequantize("Q4_K", new Uint8Array(143), 256), /144 bytes, but 143/);
  assert.throws(() => dequantize("F32", new Uint8Array(12), 2), /8 bytes, but 12/);
  assert.throws(() => ggmlTensorBytes("Q8_0", 33), /not a whole number of 32-element blocks/);
  assert.throws(() => ggmlTensorBytes("Q6_K", 128), /not a whole number/);
  assert.throws(() => dequantize("Q8_0", new Uint8Array(34), 33), /not a whole number/);
  assert.throws(() => dequantize("Q8_0", new Uint8Array(34), 32, new Float32Array(31)), /31/);
});

Deno.test("ggufQuants: unaligned input and a given output give the same bits", () => {
  for (const type of SUPPORTED) {
    const count = 2 * ggmlBlockSize(type).elements * (ggmlBlockSize(type).elements === 1 ? 8 : 1);
    const data = pseudoRandomBytes(ggmlTensorBytes(type, count), 0x9e3779b9 ^ GGML_TYPES[type]);
    const aligned = new Uint32Array(dequantize(type, data, count).buffer);
    const out = new Float32Array(count + 4);
    const result = dequantize(type, unaligned(data), count, out);
    assert.equal(result, out, `${type}: returns the given array`);
    assert.deepEqual(new Uint32Array(out.buffer, 0, count), aligned, type);
  }
});
