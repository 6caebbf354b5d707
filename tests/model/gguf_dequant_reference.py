"""Reference dequantization for tests/model/ggufQuants_test.ts: builds random but valid blocks of
each ggml type (random quant codes; finite f16 scales of varied magnitude and sign, including
zero and subnormal ones), dequantizes them with `gguf.quants.dequantize`, and writes
OUT_DIR/<TYPE>.raw (the blocks), OUT_DIR/<TYPE>.f32 (the float32 result) and
OUT_DIR/index.json ({"<TYPE>": element_count, ...}).

usage: python3 gguf_dequant_reference.py OUT_DIR
"""

import json
import os
import sys

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

# Byte offsets of the f16 scale fields in one block (ggml-common.h).
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Scale bits forced into the first blocks: +0, -0, subnormals, the largest finite, -1.
SPECIAL_F16 = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xBC00]
BLOCKS = 8


def random_f16(rng, n):
    """Finite f16 bit patterns: any sign, exponent 0..30 (0: zero or subnormal)."""
    return (rng.integers(0, 2, n) << 15) | (rng.integers(0, 31, n) << 10) | rng.integers(0, 1024, n)


def make_blocks(rng, name):
    qtype = GGMLQuantizationType[name]
    per_block, type_size = GGML_QUANT_SIZES[qtype]
    if name in ("F32", "F16", "BF16"):
        count = 64
        if name == "F32":
            values = rng.standard_normal(count) * 10.0 ** rng.integers(-40, 38, count)
            return values.astype(np.float32).view(np.uint8), count
        if name == "F16":
            return random_f16(rng, count).astype(np.uint16).view(np.uint8), count
        exp = rng.integers(0, 255, count)  # finite bf16: exponent below 0xFF
        bits = (rng.integers(0, 2, count) << 15) | (exp << 7) | rng.integers(0, 128, count)
        return bits.astype(np.uint16).view(np.uint8), count
    blocks = rng.integers(0, 256, (BLOCKS, type_size), dtype=np.uint8)
    for b in range(BLOCKS):
        for i, offset in enumerate(F16_FIELDS[name]):
            k = b * len(F16_FIELDS[name]) + i
            bits = SPECIAL_F16[k] if k < len(SPECIAL_F16) else int(random_f16(rng, 1)[0])
            blocks[b, offset:offset + 2] = np.array([bits], dtype=np.uint16).view(np.uint8)
    return blocks.reshape(-1), BLOCKS * per_block


def main():
    out_dir = sys.argv[1]
    rng = np.random.default_rng(20240611)
    index = {}
    for name in ["F32", "F16", "BF16", *F16_FIELDS]:
        raw, count = make_blocks(rng, name)
        values = np.asarray(dequantize(raw, GGMLQuantizationType[name]), dtype=np.float32)
        assert values.size == count and np.isfinite(values).all(), name
        raw.tofile(os.path.join(out_dir, f"{name}.raw"))
        values.reshape(-1).tofile(os.path.join(out_dir, f"{name}.f32"))
        index[name] = count
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main()
