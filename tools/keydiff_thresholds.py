"""KeyDiff scores of a prompt, from Hugging Face transformers, and the DMS thresholds that keep
given fractions of the cache (tools/dms_thresholds.ts writes the prompt and prints the result).

usage: python3 keydiff_thresholds.py MODEL PROMPT.json
MODEL: a .gguf file or a Hugging Face folder. PROMPT.json: {"ids": [...], "window": 128,
"keep": [0.75, 0.5, ...]}. KeyDiff (arXiv 2504.15364, kvpress `KeyDiffPress`): per layer and KV
head, minus the cosine of each post-RoPE key to the mean of the unit-normalised keys. DMS
(kvpress `DMSPress`) keeps the last `window` entries and every older one scoring at or above the
threshold; for each target the threshold whose mean kept fraction over every layer and head is
closest is found by bisection. Prints one JSON line: the score quantiles and the thresholds.
"""

import json
import sys

import torch
from hf_model import load_model


def main():
    model_path, prompt_path = sys.argv[1:3]
    model = load_model(model_path)
    with open(prompt_path) as f:
        prompt = json.load(f)
    ids = torch.tensor([prompt["ids"]])
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    scores = []
    for layer in cache.layers:
        keys = layer.keys[0].float()  # KV heads × N × D, after RoPE
        anchor = torch.nn.functional.normalize(keys, dim=-1).mean(dim=1, keepdim=True)
        scores.append(-torch.nn.functional.cosine_similarity(keys, anchor, dim=-1))
    scores = torch.stack(scores)  # layers × KV heads × N
    n = scores.shape[-1]
    window = min(prompt["window"], n)
    older = scores[..., : n - window]

    def kept(t):
        return ((window + (older >= t).sum(-1).float()) / n).mean().item()

    thresholds = []
    for target in prompt["keep"]:
        lo, hi = older.min().item(), older.max().item() + 1e-6
        for _ in range(60):
            mid = (lo + hi) / 2
            if kept(mid) > target:
                lo = mid
            else:
                hi = mid
        thresholds.append({"keep": target, "threshold": round(lo, 4), "kept": round(kept(lo), 4)})
    q = torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99])
    sample = older.flatten()[:: max(1, older.numel() // 1_000_000)]
    print(json.dumps({
        "tokens": n,
        "quantiles": dict(zip(["1%", "25%", "50%", "75%", "99%"],
                              [round(x, 4) for x in torch.quantile(sample, q).tolist()])),
        "thresholds": thresholds,
    }))


if __name__ == "__main__":
    main()
