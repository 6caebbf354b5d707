"""kvpolicy budgets (`k=1024`, `k=25%`, `max(251, 10%)`) on kvpress's compression ratios.

kvpress presses remove a fraction r of the entries and keep ``int(L·(1−r))`` per KV head; kvpolicy
budgets name the number kept, absolute or as a fraction of the prompt. :class:`KeepBudget` resolves
the budget against the real prompt length at compression time and sets the wrapped press's
``compression_ratio`` so that exactly that many entries stay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from kvpress import BasePress

from .plan import PlanError


def resolve_budget(budget: Any, prompt_length: int, rounding: str = "round") -> int:
    """Entries a budget stands for (kvpolicy's `resolveBudget`), ≥ 1.

    Fractions round halves up, or round down with ``rounding="floor"`` (kvpress's
    ``int(L·(1−r))``, which kvpolicy's kvpress-derived presses use).
    """
    if isinstance(budget, dict) and ("max" in budget or "min" in budget):
        terms = budget.get("max", budget.get("min"))
        if not isinstance(terms, list) or not terms:
            raise PlanError(f"budget {budget!r} has no terms")
        counts = [resolve_budget(t, prompt_length, rounding) for t in terms]
        return max(counts) if "max" in budget else min(counts)
    if isinstance(budget, dict) and isinstance(budget.get("tokens"), int):
        return max(1, budget["tokens"])
    if isinstance(budget, dict) and isinstance(budget.get("fraction"), (int, float)):
        scaled = budget["fraction"] * prompt_length
        return max(1, math.floor(scaled if rounding == "floor" else scaled + 0.5))
    raise PlanError(f"budget {budget!r} is not {{tokens}}, {{fraction}}, {{max}} or {{min}}")


def ratio_keeping(length: int, kept: int) -> float:
    """A compression ratio r with ``int(length·(1−r)) == kept`` (kvpress's `compute_n_kept`)."""
    r = 1.0 - (kept + 0.5) / length
    assert int(length * (1 - r)) == kept, (length, kept, r)
    return r


@dataclass
class KeepBudget(BasePress):
    """Runs `press` keeping exactly `kept(L, layer)` entries per KV head (everything if they fit)."""

    press: Any = None
    kept: Callable[[int, int], int] = None
    #: When set, the prompt length is recorded here (`{"length": N}`) for decoding-time budgets.
    prompt: Any = None

    def post_init_from_model(self, model):
        self.press.post_init_from_model(model)

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        length = keys.shape[2]
        if self.prompt is not None:
            self.prompt["length"] = length
        kept = self.kept(length, module.layer_idx)
        if kept >= length:
            return keys, values
        self.press.compression_ratio = ratio_keeping(length, kept)
        return self.press.compress(module, hidden_states, keys, values, attentions, kwargs)
