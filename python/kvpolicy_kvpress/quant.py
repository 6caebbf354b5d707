"""kvpolicy's `quant` (KIVI storage) as transformers' quantized cache, which kvpress presses accept.

transformers' ``QuantizedCache(backend="quanto")`` (``cache_utils.py``, ``QuantizedLayer``) keeps
low-bit keys and values plus a full-precision residual. kvpolicy's ``quant(bits, group, residual)``
stores KIVI's layout (arXiv 2402.02750): keys per channel over blocks of `group` tokens, values per
token over groups of `group` channels. quanto's per-channel axis (``axis_key=-1``) groups the rows
of all heads and tokens together and fails unless heads × tokens is a multiple of the group, so
the bridge keeps transformers' default axes: keys and values per token, in groups of `group`
channels (the group must divide the head dimension). Its schedule is not KIVI's either: the whole
prompt is quantized
at prefill (KIVI keeps the last keys of an incomplete block and the `residual` most recent values in
full precision), and each time `residual` new tokens have gathered the whole cache is quantized
again from its dequantized values (KIVI packs each block once); quanto rounds its scales and
zero points its own way. The bridge says so in a note; tokens can differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .plan import PlanError


@dataclass(frozen=True)
class QuantSpec:
    """One quantized cache for the whole model: bits, group size, full-precision residual."""

    bits: int
    group: int
    residual: int

    def make_cache(self, model):
        """A fresh ``QuantizedCache`` (quanto backend, per-token axes; needs optimum-quanto)."""
        head_dim = model.config.head_dim
        if head_dim % self.group:
            raise PlanError(f"quant(group={self.group}): quanto quantizes each token's head dimension "
                            f"({head_dim}) in groups, which the group size must divide")
        from transformers import QuantizedCache

        try:
            return QuantizedCache(backend="quanto", config=model.config, nbits=self.bits, axis_key=0,
                                  axis_value=0, q_group_size=self.group, residual_length=self.residual)
        except ImportError as e:
            raise PlanError(f"quant: transformers' quantized cache needs optimum-quanto ({e})") from None


def quant_note(spec: QuantSpec) -> str:
    """What the bridge's quantized cache does differently from kvpolicy's KIVI storage."""
    return (f"quant(bits={spec.bits}, group={spec.group}, residual={spec.residual}): transformers' "
            "QuantizedCache (quanto) quantizes keys per token, where KIVI quantizes them per "
            "channel, quantizes the whole prompt at prefill and re-quantizes the whole cache each "
            "time the residual fills, where KIVI packs each block once and keeps the newest "
            "entries in full precision; tokens can differ")


def split_quant(plan: dict) -> tuple[dict, Optional[QuantSpec]]:
    """The plan without its `quant` presses, and the one quantized cache they stand for.

    kvpress runs one cache for the whole model, so every rule must end in the same `quant` (an
    `else` rule included, so that no head is left unquantized); anything else is refused.
    """
    rules = plan["rules"]
    calls = [[c for c in r["pipeline"] if c["name"] == "quant"] for r in rules]
    if not any(calls):
        return plan, None

    def where(r):
        return f"rule `{r['text']}` (line {r.get('line', '?')})"

    specs = set()
    for r, quant in zip(rules, calls):
        if not quant:
            raise PlanError(f"{where(r)}: kvpress quantizes the whole cache or none of it; every "
                            "rule needs the same `quant` (this one has none)")
        p = quant[0]["params"]
        kbits, vbits = p.get("kbits") or p["bits"], p.get("vbits") or p["bits"]
        if kbits != vbits:
            raise PlanError(f"{where(r)}: transformers' quantized cache has one bit width for keys "
                            f"and values (kbits={kbits}, vbits={vbits})")
        if kbits not in (2, 4):
            raise PlanError(f"{where(r)}: transformers' quanto cache stores 2 or 4 bits, not {kbits}")
        specs.add(QuantSpec(kbits, p["group"], p["residual"]))
    if len(specs) > 1:
        raise PlanError("the rules quantize with different settings; kvpress runs one quantized cache")
    if not any(r.get("isElse") for r in rules):
        raise PlanError("kvpress quantizes the whole cache: the plan needs an `else` rule with the "
                        "same `quant`, so that no head stays unquantized")
    stripped = [dict(r, pipeline=[c for c in r["pipeline"] if c["name"] != "quant"]) for r in rules]
    return dict(plan, rules=stripped), specs.pop()
