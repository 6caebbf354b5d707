"""Head rules on kvpress: different presses for different KV heads of one layer.

kvpress stores one dense cache per layer; head-wise budgets (AdaKV, DuoAttention) keep every key
and mask the evicted ones per head through `module.masked_key_indices`, which kvpress's attention
patch turns into a fake key whose attention underflows (`kvpress/attention_patch.py`). A
:class:`HeadRulesPress` runs each head's press on the layer, reads which positions it kept for that
head, and masks the rest, so `heads 0 -> full; else -> snap(k=64)` keeps exactly what kvpolicy
keeps per head. No memory is freed (kvpolicy's ragged cache frees it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from kvpress import BasePress


def kept_by(press, module, hidden_states, keys, values, attentions, kwargs) -> list:
    """Per KV head, the set of positions `press` keeps of `keys` (matched row by row)."""
    kv_heads, length = keys.shape[1], keys.shape[2]
    module.masked_key_indices = None
    out_keys, _ = press.compress(module, hidden_states, keys, values, attentions, kwargs)
    masked = getattr(module, "masked_key_indices", None)
    module.masked_key_indices = None
    dropped = set()
    if masked is not None:
        dropped = set(zip(masked[1].tolist(), masked[2].tolist()))
    result = []
    for h in range(kv_heads):
        if out_keys.shape[2] == length and out_keys.data_ptr() == keys.data_ptr():
            rows = list(range(length))
        else:
            rows = torch.cdist(out_keys[0, h].double(), keys[0, h].double()).argmin(dim=1).tolist()
        result.append({p for r, p in enumerate(rows) if (h, r) not in dropped})
    return result


@dataclass
class HeadRulesPress(BasePress):
    """`presses[h]` chooses what KV head h keeps (`None`: everything); the rest is masked."""

    presses: list = field(default_factory=list)

    def post_init_from_model(self, model):
        for p in {id(p): p for p in self.presses if p is not None}.values():
            p.post_init_from_model(model)

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        assert keys.shape[0] == 1, "head rules run with batch size 1"
        kv_heads, length = keys.shape[1], keys.shape[2]
        if len(self.presses) != kv_heads:
            raise ValueError(f"the plan has {len(self.presses)} KV heads, the layer {kv_heads}")
        keep = [set(range(length))] * kv_heads
        for press in {id(p): p for p in self.presses if p is not None}.values():
            kept = kept_by(press, module, hidden_states, keys, values, attentions, kwargs)
            keep = [kept[h] if self.presses[h] is press else keep[h] for h in range(kv_heads)]
        heads, positions = [], []
        for h in range(kv_heads):
            for p in range(length):
                if p not in keep[h]:
                    heads.append(h)
                    positions.append(p)
        if heads:
            n = len(heads)
            module.masked_key_indices = (
                torch.zeros(n, dtype=torch.long, device=keys.device),
                torch.tensor(heads, dtype=torch.long, device=keys.device),
                torch.tensor(positions, dtype=torch.long, device=keys.device),
            )
        return keys, values
