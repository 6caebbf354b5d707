import assert from "node:assert/strict";
import {
  bf16BitsToNumber,
  bytesPerElement,
  elementCount,
  f16BitsToNumber,
  tensorToFloat32,
} from "../../src/model/dtype.ts";
import type { DType, Tensor } from "../../src/model/types.ts";

function tensorOfBits(dtype: DType, bits: Uint16Array): Tensor {
  return { name: "t", dtype, shape: [bits.length], data: new Uint8Array(bits.buffer) };
}

const ALL_16_BIT_PATTERNS = Uint16Array.from({ length: 65536 }, (_, i) => i);

Deno.test("dtype: every f16 bit pattern decodes like the built-in Float16Array", () => {
  const expected = new Float16Array(ALL_16_BIT_PATTERNS.buffer);
  const decoded = tensorToFloat32(tensorOfBits("F16", ALL_16_BIT_PATTERNS));
  for (let bits = 0; bits < 65536; bits++) {
    assert.ok(
      Object.is(decoded[bits], expected[bits]) && Object.is(f16BitsToNumber(bits), expected[bits]),
      `f16 0x${bits.toString(16)}: got ${decoded[bits]}, want ${expected[bits]}`,
    );
  }
  assert.equal(f16BitsToNumber(0x0001), 2 ** -24, "smallest subnormal");
  assert.equal(f16BitsToNumber(0x03ff), 1023 * 2 ** -24, "largest subnormal");
});

Deno.test("dtype: every bf16 bit pattern is the upper half of a float32", () => {
  const decoded = tensorToFloat32(tensorOfBits("BF16", ALL_16_BIT_PATTERNS));
  const asF32 = new Float32Array(
    Uint32Array.from(ALL_16_BIT_PATTERNS, (bits) => bits << 16).buffer,
  );
  for (let bits = 0; bits < 65536; bits++) {
    assert.ok(Object.is(decoded[bits], asF32[bits]), `bf16 0x${bits.toString(16)}`);
    assert.ok(Object.is(bf16BitsToNumber(bits), asF32[bits]));
  }
  assert.equal(bf16BitsToNumber(0x3f80), 1);
  assert.equal(bf16BitsToNumber(0xc000), -2);
});

Deno.test("dtype: f32 tensors decode from unaligned bytes too", () => {
  const values = new Float32Array([1.5, -2.25, 3e-38]);
  const padded = new Uint8Array(13);
  padded.set(new Uint8Array(values.buffer), 1);
  const tensor: Tensor = { name: "t", dtype: "F32", shape: [3], data: padded.subarray(1) };
  assert.deepEqual(tensorToFloat32(tensor), values);
});

Deno.test("dtype: sizes and a byte-length mismatch", () => {
  assert.equal(bytesPerElement("F32"), 4);
  assert.equal(bytesPerElement("BF16"), 2);
  assert.equal(elementCount([2, 3, 4]), 24);
  assert.equal(elementCount([]), 1);
  assert.throws(
    () => tensorToFloat32({ name: "w", dtype: "F16", shape: [3], data: new Uint8Array(4) }),
    /tensor "w" holds 4 bytes, expected 6/,
  );
});
