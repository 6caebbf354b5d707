"""DuoAttention's on-the-fly heads from the prompt: `heads duo -> full; else -> window(...)`.

kvpress's ``DuoAttentionPress(on_the_fly_scoring=True)`` (``duo_attention_press.py``, arXiv
2410.10819) scores every KV head once per model from 50 BookSum chapters: per layer, the mean
pre-RoPE query and key, tiled over ``q_len`` positions and rotated, the last query's attention
row, and the mean of its cumulative sum (the area under the cumulative-attention curve), averaged
over the GQA group; the ``round(n·ratio)`` lowest heads of the whole model become streaming heads,
which keep ``sink_size`` + ``recent_size`` entries (masked at prefill, growing while decoding).
BookSum is not available offline; kvpolicy's `duo` detector takes the means over the prompt
itself. :class:`PromptDuoAttentionPress` does the same on kvpress: before the prompt's forward
pass it runs the model once over the prompt (its hooks idle) for the hidden states, scores the
heads by kvpress's formula, and hands DuoAttentionPress the streaming mask and the policy's window.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from types import MethodType
from typing import Any

import numpy as np
import torch
from kvpress import DuoAttentionPress
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from .budget import resolve_budget


def duo_head_scores(model, input_ids: torch.Tensor, q_len: int) -> np.ndarray:
    """[layers, KV heads] DuoAttention scores from the means over `input_ids` (one sequence)."""
    config = model.config
    group = config.num_attention_heads // config.num_key_value_heads
    with torch.no_grad():
        hidden = model.model(input_ids=input_ids, output_hidden_states=True, use_cache=False).hidden_states
        positions = torch.arange(q_len, device=input_ids.device).unsqueeze(0)
        scores = np.zeros((config.num_hidden_layers, config.num_key_value_heads))
        for index, layer in enumerate(model.model.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(hidden[index])

            def mean_over_prompt(proj, norm):
                x = proj(h).view(1, h.shape[1], -1, attn.head_dim)
                if norm is not None:
                    x = norm(x)
                return x.mean(dim=1, keepdim=True).expand(1, q_len, -1, -1).transpose(1, 2)

            q = mean_over_prompt(attn.q_proj, getattr(attn, "q_norm", None))
            k = mean_over_prompt(attn.k_proj, getattr(attn, "k_norm", None))
            cos, sin = model.model.rotary_emb(h, positions)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k = k.repeat_interleave(group, dim=1)
            row = (q[:, :, -1:, :] @ k.transpose(2, 3) / attn.head_dim**0.5).softmax(dim=-1, dtype=torch.float32)
            area = row.squeeze(0).squeeze(1).cumsum(dim=1).mean(dim=1)
            scores[index] = area.view(-1, group).mean(dim=1).cpu().numpy()
    return scores


@dataclass
class PromptDuoAttentionPress(DuoAttentionPress):
    """DuoAttentionPress whose heads are scored on the prompt and whose window is the policy's."""

    sink: int = 128
    recent: Any = None  # a kvpolicy budget, resolved against the prompt length
    q_len: int = 500

    def post_init_from_model(self, model):
        self._scoring = False

    def forward_hook(self, module, input, kwargs, output):
        if self._scoring:
            return output  # the scoring pass only reads hidden states
        return super().forward_hook(module, input, kwargs, output)

    def _score(self, model, input_ids: torch.Tensor) -> None:
        self._scoring = True
        try:
            scores = duo_head_scores(model, input_ids, self.q_len)
        finally:
            self._scoring = False
        self.sink_size = self.sink
        self.recent_size = resolve_budget(self.recent, input_ids.shape[1])
        n_streaming = round(scores.size * self.head_compression_ratio)
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=model.device)
        if n_streaming > 0:
            # kvpress: np.argsort(scores, axis=None), ties in any order; kvpolicy's order breaks
            # them (the later layer, then the later head, streams first).
            layer, head = np.indices(scores.shape)
            order = np.lexsort((-head.ravel(), -layer.ravel(), scores.ravel()))[:n_streaming]
            mask[np.unravel_index(order, scores.shape)] = True
        self.streaming_mask = mask
        self.head_scores = scores

    @contextmanager
    def __call__(self, model):
        original = model.model.forward

        def scored_forward(model_self, *args, **kwargs):
            ids = kwargs.get("input_ids")
            if not self._scoring and ids is not None and ids.shape[1] > 1:
                self._score(model, ids)
            return original(*args, **kwargs)

        with super().__call__(model):
            model.model.forward = MethodType(scored_forward, model.model)
            try:
                yield
            finally:
                model.model.forward = original
