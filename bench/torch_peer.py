"""The PyTorch peer for `bench` (issue: on a real GPU, compression must buy speed): Hugging Face
transformers decoding a random-weight Llama of one of `bench`'s shapes from the same kind of
prompt, greedy, with its default attention and a DynamicCache, no CUDA graphs, no torch.compile.
Also measures the device's copy bandwidth (a large tensor copy), against which decode's bytes per
token are compared.

    python3 bench/torch_peer.py --shape '{"hidden_size": 2048, ...}' --lengths 1024,16384
        [--decode-tokens 64] [--dtype bfloat16] [--device cuda]

Prints one JSON object: device, torch/transformers versions, copy GB/s, and a row per length with
prefill and decode tokens/s and the weight bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def copy_bandwidth(torch, device: str) -> float:
    """GB/s of a 1 GiB device-to-device copy (read + write counted), best of 5."""
    n = (1 << 30) // 4 if device != "cpu" else (1 << 26)
    src = torch.empty(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        sync(torch, device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(torch, device)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best / 1e9


def sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", required=True, help="bench shape as JSON (bench/randomModel.ts)")
    parser.add_argument("--lengths", default="1024")
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    try:
        import torch
        import transformers
        from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        print(json.dumps({"error": f"no PyTorch peer: {e}"}))
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    shape = json.loads(args.shape)
    lengths = [int(x) for x in args.lengths.split(",")]
    config = LlamaConfig(
        **shape,
        max_position_embeddings=max(lengths) + args.decode_tokens + 8,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    def run(n: int, decode_tokens: int) -> tuple:
        """Prefill n tokens, then decode greedily; seconds for each."""
        ids = torch.tensor([[(j * 7919 + 13) % shape["vocab_size"] for j in range(n)]], device=device)
        with torch.no_grad():
            cache = DynamicCache()
            sync(torch, device)
            t = time.perf_counter()
            out = model(input_ids=ids, past_key_values=cache, logits_to_keep=1)
            token = out.logits[:, -1:].argmax(-1)
            sync(torch, device)
            prefill_s = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(decode_tokens):
                position = torch.tensor([[n + i]], device=device)
                out = model(input_ids=token, past_key_values=cache, position_ids=position)
                token = out.logits[:, -1:].argmax(-1)
            sync(torch, device)
            return prefill_s, time.perf_counter() - t

    run(min(64, lengths[0]), 4)  # warm-up, untimed: kernels chosen, allocator primed
    rows = []
    for n in lengths:
        prefill_s, decode_s = run(n, args.decode_tokens)
        rows.append({
            "prompt_tokens": n,
            "prefill_tok_s": n / prefill_s,
            "decode_tok_s": args.decode_tokens / decode_s,
        })
    print(json.dumps({
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attention": model.config._attn_implementation,
        "cuda_graphs": False,
        "torch_compile": False,
        "dtype": args.dtype,
        "weight_bytes": weight_bytes,
        "copy_gb_s": copy_bandwidth(torch, device),
        "rows": rows,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
