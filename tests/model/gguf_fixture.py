"""Synthetic GGUF checkpoints with an independent reference, for kvpolicy's GGUF loader.

Builds small random-weight Llama (GQA), Qwen3 (per-head q/k norm, head_dim != hidden/heads) and
Gemma 3 (sliding and global layers, GeGLU, pre/post norms, norms written as 1 + w as llama.cpp's
converter does) models with Hugging Face transformers, writes each as a GGUF with the `gguf` package (tensors
spread over every supported ggml type; Llama's Q/K rows permuted as llama.cpp's converter does),
and records the logits that transformers computes when it loads that GGUF back
(`from_pretrained(..., gguf_file=...)`, which dequantizes through `gguf`). The Qwen3 and Gemma 3 models are
also saved as Hugging Face folders with their own logits (the Gemma 3 folder with a query scale,
window, layer pattern and RoPE of its own, which GGUF metadata cannot express).

usage: python3 gguf_fixture.py OUT_DIR
writes OUT_DIR/{llama,qwen3,gemma3}.gguf, OUT_DIR/{qwen3,gemma3}-hf/, OUT_DIR/reference.json
"""

import json
import os
import sys

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, Qwen3Config
from transformers.utils import logging

logging.set_verbosity_error()
logging.disable_progress_bar()

IDS = [3, 17, 250, 9, 88, 301, 42, 42, 7, 129, 64, 200]
# Types assigned to the weight matrices in turn; K-quants get random blocks (gguf has no
# quantizer for them), the others are quantized from the random float weights.
MATRIX_TYPES = [T.Q8_0, T.Q4_K, T.Q4_0, T.Q5_K, T.Q4_1, T.Q6_K, T.Q5_0, T.Q2_K, T.Q5_1, T.Q3_K,
                T.F16, T.BF16, T.F32]


def random_k_blocks(rng, qtype, rows, cols):
    """Random blocks of a K-quant whose f16 scales are small and finite."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    def f16(lo, hi):
        return np.frombuffer(rng.uniform(lo, hi, n).astype(np.float16).tobytes(), np.uint8).reshape(n, 2)
    if qtype in (T.Q4_K, T.Q5_K):  # d, dmin first
        raw[:, 0:2], raw[:, 2:4] = f16(0.0005, 0.004), f16(0.0, 0.02)
    elif qtype == T.Q6_K:  # d last
        raw[:, -2:] = f16(0.0001, 0.0006)
    elif qtype == T.Q2_K:  # d, dmin last
        raw[:, -4:-2], raw[:, -2:] = f16(0.002, 0.01), f16(0.0, 0.01)
    elif qtype == T.Q3_K:  # d last
        raw[:, -2:] = f16(0.0002, 0.001)
    return raw.reshape(rows, cols // block * size)


def encode(rng, qtype, w):
    w = w.astype(np.float32)
    if qtype == T.F32:
        return w, None
    if qtype in (T.Q4_K, T.Q5_K, T.Q6_K, T.Q2_K, T.Q3_K):
        return random_k_blocks(rng, qtype, *w.shape), qtype
    return gguf.quants.quantize(w, qtype), qtype


def permute(w, heads):
    """Hugging Face -> llama.cpp row order of a Q or K projection."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, arch, cfg, state):
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    rope = cfg.rope_parameters
    writer.add_rope_freq_base(rope["full_attention"]["rope_theta"] if arch == "gemma3" else
                              cfg.rope_theta if hasattr(cfg, "rope_theta") else rope["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    if arch == "gemma3":
        writer.add_sliding_window(cfg.sliding_window)
    rng = np.random.default_rng(7)
    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    layer_names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
                   "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                   "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
                   "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm",
                   "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                   "mlp.down_proj": "ffn_down"}
    if arch == "gemma3":
        layer_names.update({"post_attention_layernorm": "post_attention_norm",
                            "pre_feedforward_layernorm": "ffn_norm",
                            "post_feedforward_layernorm": "post_ffw_norm"})
    turn = 0
    for name, tensor in state.items():
        w = tensor.detach().to(torch.float32).numpy()
        if name.startswith("model.layers."):
            _, _, layer, rest = name.split(".", 3)
            base = rest.rsplit(".", 1)[0]
            out = f"blk.{layer}.{layer_names[base]}.weight"
            if arch == "llama" and base == "self_attn.q_proj":
                w = permute(w, cfg.num_attention_heads)
            if arch == "llama" and base == "self_attn.k_proj":
                w = permute(w, cfg.num_key_value_heads)
        else:
            out = names[name]
        if w.ndim == 1:
            if arch == "gemma3":  # llama.cpp stores Gemma's RMSNorm weight as 1 + w
                w = w + 1
            writer.add_tensor(out, w.astype(np.float32))
            continue
        qtype = MATRIX_TYPES[turn % len(MATRIX_TYPES)]
        turn += 1
        data, raw_dtype = encode(rng, qtype, w)
        writer.add_tensor(out, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def init_random(model):
    """Norm weights near 1 (Gemma's near 0: it scales by 1 + w), matrices N(0, 0.05)."""
    gemma = model.config.model_type == "gemma3_text"
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.copy_((0 if gemma else 1) + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.05)
    return model


def logits_of(model):
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].to(torch.float32).numpy().tolist()


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    common = dict(vocab_size=320, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                  tie_word_embeddings=False)
    configs = {
        "llama": LlamaConfig(num_attention_heads=4, head_dim=64, rope_theta=10000.0, **common),
        "qwen3": Qwen3Config(num_attention_heads=4, head_dim=128, rope_theta=1000000.0, **common),
    }
    # Gemma 3 from GGUF: every 6th layer global, sliding RoPE base 10000, q·k scaled by
    # 1/sqrt(head_dim) (transformers' default query_pre_attn_scalar 256 = head_dim), window 5.
    gemma = dict(common, num_hidden_layers=6, tie_word_embeddings=True)
    configs["gemma3"] = Gemma3TextConfig(num_attention_heads=2, head_dim=256, sliding_window=5,
                                         **gemma)
    # The Hugging Face folder: its own query scale, layer pattern and RoPE (linear on globals).
    hf = Gemma3TextConfig(num_attention_heads=4, head_dim=64, sliding_window=4,
                          query_pre_attn_scalar=48,
                          layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                          rope_parameters={
                              "sliding_attention": {"rope_type": "default", "rope_theta": 500.0},
                              "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                 "rope_theta": 20000.0}},
                          **dict(common, num_hidden_layers=3, tie_word_embeddings=True))
    reference = {"ids": IDS}
    model = init_random(AutoModelForCausalLM.from_config(hf, dtype=torch.float32))
    model.save_pretrained(os.path.join(out, "gemma3-hf"))
    reference["gemma3-hf"] = logits_of(model)
    for arch, cfg in configs.items():
        model = init_random(AutoModelForCausalLM.from_config(cfg, dtype=torch.float32))
        if arch == "qwen3":
            model.save_pretrained(os.path.join(out, "qwen3-hf"))
            reference["qwen3-hf"] = logits_of(model)
        path = os.path.join(out, f"{arch}.gguf")
        write_gguf(path, arch, cfg, model.state_dict())
        loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=f"{arch}.gguf",
                                                      dtype=torch.float32)
        reference[arch] = logits_of(loaded)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    main()
