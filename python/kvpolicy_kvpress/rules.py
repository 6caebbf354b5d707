"""Per-layer rules on kvpress: each attention layer runs its own press (or none).

kvpress applies a press through a forward hook on every attention layer (`BasePress.__call__`).
:class:`LayerRulesPress` registers one hook and hands each layer's call to that layer's press, so
a policy such as ``layers 0..3 -> window(...); else -> snap(...)`` runs every press exactly as it
runs alone. kvpress's own `PerLayerCompressionPress` varies only the ratio of a single press.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from kvpress import BasePress


@dataclass
class LayerRulesPress(BasePress):
    """`presses[l]` compresses layer l; `None` keeps that layer's cache whole."""

    presses: list = field(default_factory=list)

    def post_init_from_model(self, model):
        n_layers = model.config.num_hidden_layers
        if len(self.presses) != n_layers:
            raise ValueError(f"the plan was resolved for {len(self.presses)} layers, the model has {n_layers}")
        for press in self._distinct():
            press.post_init_from_model(model)

    def _distinct(self) -> list:
        seen: list = []
        for p in self.presses:
            if p is not None and all(p is not q for q in seen):
                seen.append(p)
        return seen

    def press_for(self, layer: int) -> Optional[BasePress]:
        return self.presses[layer]

    def forward_hook(self, module, input, kwargs, output):
        press = self.presses[module.layer_idx]
        return output if press is None else press.forward_hook(module, input, kwargs, output)
