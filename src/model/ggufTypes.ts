/**
 * Data types of the GGUF format (llama.cpp's single-file checkpoint, version 2 and 3), shared by
 * the reader, the dequantizer, the tokenizer builder and the model mapping. Format reference:
 * ggml's `docs/gguf.md`.
 *
 * @module
 */

/**
 * One metadata value. Integers of 8 to 32 bits and floats are numbers; 64-bit integers are
 * bigints; arrays are plain arrays of values of one type.
 */
export type GgufValue = number | bigint | string | boolean | GgufValue[];

/** A GGUF file's metadata: key (e.g. `llama.block_count`) to value, in file order. */
export type GgufMetadata = ReadonlyMap<string, GgufValue>;

/** ggml tensor types by their numeric id in the tensor table (`enum ggml_type`). */
export const GGML_TYPES = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  BF16: 30,
} as const;

/** Name of a ggml tensor type, e.g. `"Q4_K"`. */
export type GgmlTypeName = keyof typeof GGML_TYPES;
