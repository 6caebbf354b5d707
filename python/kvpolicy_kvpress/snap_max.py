"""SnapKV with max pooling, scored as kvpolicy's `snap(reduce=max)`, `pyramid` and `adakv` score.

kvpress's SnapKVPress smooths with average pooling only and pools each query head before averaging
over the GQA group. SnapKV's official LongBench configuration (FasterDecoding/SnapKV,
`snapkv_utils.py`) and KVCache-Factory's PyramidKV / Ada-KV use max pooling; kvpolicy averages the
group's window attention first and then pools (METHODS.md), which for max pooling is a different
ranking. This subclass reuses kvpress's window attention and changes only those two steps, and
breaks ties as kvpolicy does (lower position first): max pooling spreads one value over its
neighbours, so exact ties are common, and `torch.topk` orders them arbitrarily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kvpress import SnapKVPress
from kvpress.utils import compute_n_kept


@dataclass
class MaxPoolSnapKVPress(SnapKVPress):
    """SnapKV scores: group-mean window attention, then 1-D max pooling (stride 1, pad k//2)."""

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        bsz, kv_heads, k_len, _ = keys.shape
        group = module.config.num_attention_heads // kv_heads
        assert hidden_states.shape[1] > self.window_size, "the prompt must be longer than the window"
        weights = self.compute_window_attention(
            module, hidden_states, keys, self.window_size, kwargs["position_embeddings"]
        )
        scores = weights.mean(dim=-2)  # (bsz, heads, k_len - window)
        scores = scores.view(bsz, kv_heads, group, k_len - self.window_size).mean(2)
        pad = self.kernel_size // 2
        scores = F.max_pool1d(scores, kernel_size=self.kernel_size, padding=pad, stride=1)
        return F.pad(scores, (0, self.window_size), value=scores.max().item() + 1)

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        if self.compression_ratio == 0:
            return keys, values
        scores = self.score(module, hidden_states, keys, values, attentions, kwargs)
        n_kept = compute_n_kept(keys.shape[2], self.compression_ratio)
        # A stable descending sort keeps the lower position among equal scores.
        indices = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :n_kept]
        indices = indices.unsqueeze(-1).expand(-1, -1, -1, module.head_dim)
        return keys.gather(2, indices).contiguous(), values.gather(2, indices).contiguous()
