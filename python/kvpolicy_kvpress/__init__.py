"""kvpolicy_kvpress — run a compiled kvpolicy plan on NVIDIA kvpress (PyTorch / transformers).

    plan = load_plan("snap.plan.json")          # deno task check --plan snap.kvp > snap.plan.json
    built = build_press(plan, model.config.num_hidden_layers)
    with built.press(model):
        model(input_ids, past_key_values=cache)
"""

from .budget import KeepBudget, resolve_budget
from .build import BuiltPress, build_press
from .engine import generate, kept_positions, load_model, prompt_ids
from .plan import PLAN_FORMAT, PlanError, load_plan
from .rules import LayerRulesPress
from .snap_max import MaxPoolSnapKVPress

__all__ = [
    "PLAN_FORMAT",
    "BuiltPress",
    "KeepBudget",
    "LayerRulesPress",
    "MaxPoolSnapKVPress",
    "PlanError",
    "build_press",
    "generate",
    "kept_positions",
    "load_model",
    "load_plan",
    "prompt_ids",
    "resolve_budget",
]
