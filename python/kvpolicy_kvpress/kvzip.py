"""KVzip on kvpress with kvpolicy's budget: `kvzip(k, chunk, layerwise)` as :class:`KVzipPress`.

kvpress's ``KVzipPress`` (kvpress ``presses/kvzip_press.py``, arXiv 2505.23416) scores the whole
model at once, after the prompt's forward pass, and removes a fraction r of all entries: over every
layer and head together (``layerwise=False``) or the same share in each layer. kvpolicy's
``kvzip(k=…)`` names the entries kept per KV head on average, so r = 1 − f for a fraction
``k=f``, and r = 1 − ⌊k⌋/L for a count, L known only once the prompt has run: this subclass sets
the ratio there. kvpolicy reconstructs the whole prompt, where kvpress leaves out (and evicts
first) as many leading tokens as the chat template's prefix has: the subclass reconstructs from
position 0. kvpress loads the tokenizer from ``model.config.name_or_path``, which for a GGUF
checkpoint is its folder: the tokenizer is then read from the GGUF file that
:func:`kvpolicy_kvpress.engine.load_model` recorded. Because the press runs over the whole model, it is bridged only for a plan whose
every head runs ``kvzip`` alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import kvpress as kp
import kvpress.presses.kvzip_press as kvzip_module
from transformers import AutoTokenizer

from .budget import resolve_budget


def kvzip_ratio(budget: Any, length: int) -> float:
    """The fraction of a `length`-entry cache that kvpolicy's `kvzip(k=budget)` removes."""
    if isinstance(budget, dict) and isinstance(budget.get("fraction"), (int, float)):
        return 1.0 - budget["fraction"]
    return 1.0 - resolve_budget(budget, length, "floor") / length


@dataclass
class BudgetKVzipPress(kp.KVzipPress):
    """``KVzipPress`` whose compression ratio comes from a kvpolicy budget and the prompt length."""

    # A placeholder above 0, so that kvpress runs the reconstruction; the real ratio is set there.
    compression_ratio: float = 0.5
    keep: Any = None

    def _perform_kvzip_compression(self, model, tokenizer):
        ratio = kvzip_ratio(self.keep, self._context_ids.shape[1])
        if ratio <= 0:
            return  # the budget holds the whole prompt: nothing to score or remove
        self.compression_ratio = ratio
        # kvpolicy reconstructs the whole prompt; kvpress would leave out as many leading tokens as
        # the chat template's prefix has (and evict them first), assuming a chat-framed context.
        self.prefix_length = 0
        super()._perform_kvzip_compression(model, tokenizer)

    @contextmanager
    def __call__(self, model):
        gguf = getattr(model, "kvpolicy_gguf_file", None)
        if gguf is None:
            with super().__call__(model):
                yield
            return
        tokenizer = AutoTokenizer.from_pretrained(model.config.name_or_path, gguf_file=gguf)

        class _FromGguf:
            @staticmethod
            def from_pretrained(*_args, **_kwargs):
                return tokenizer

        with mock.patch.object(kvzip_module, "AutoTokenizer", _FromGguf), super().__call__(model):
            yield
