"""From a compiled kvpolicy plan to the kvpress press that does the same thing.

Whole-model rules become the matching press; layer rules a :class:`LayerRulesPress`; pipelines
compose (`snap + chunkkv` is `ChunkKVPress(SnapKVPress)`); budgets go through :class:`KeepBudget`.
A rule kvpress cannot express raises :class:`PlanError` naming the rule: nothing is approximated
silently. Where both engines run a method but define a detail differently, the difference is
returned in :attr:`BuiltPress.notes` (the exporter prints them; docs/kvpress.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import kvpress as kp

from .budget import KeepBudget, resolve_budget
from .heads import HeadRulesPress
from .duo import PromptDuoAttentionPress
from .kvzip import BudgetKVzipPress
from .quant import QuantSpec, quant_note, split_quant
from .plan import PlanError, load_plan
from .rules import LayerRulesPress
from .snap_max import MaxPoolSnapKVPress


@dataclass
class BuiltPress:
    """The press for a plan (None = keep everything), and the documented differences it has."""

    press: Optional[kp.BasePress]
    notes: list = field(default_factory=list)
    decoding: bool = False
    #: The quantized cache the plan's `quant` stands for (None: a plain DynamicCache).
    quant: Optional[QuantSpec] = None


class _Rule:
    def __init__(self, rule: dict):
        self.rule = rule
        self.text = rule["text"]

    def fail(self, why: str) -> PlanError:
        return PlanError(f"rule `{self.text}` (line {self.rule.get('line', '?')}): {why}")


# kvpolicy resolves these presses' fractional budgets as kvpress does (`int(L·(1−r))`, rounding
# down); the others round to the nearest entry (src/plugins/budget.ts).
FLOOR_ROUNDED = {
    "keydiff", "expected", "tova", "kvzip", "h2o", "dms", "chunkkv", "critical", "adaptive"
}


def _budget_count(budget: Any, press: str) -> Callable[[int, int], int]:
    rounding = "floor" if press in FLOOR_ROUNDED else "round"
    return lambda length, layer: resolve_budget(budget, length, rounding)


def pyramid_prefix_budget(k: int, window: int, beta: float, layer: int, n_layers: int, n: int) -> int:
    """KVCache-Factory's PyramidKV schedule (`PyramidKVCluster.update_kv`): layer l's prefix budget,
    window excluded, with floor divisions; kvpolicy's `pyramid(schedule=official)`."""
    base = k - window
    if n < k:
        return max(0, n - window)
    if n < 2 * base or n_layers < 2:
        return base
    lo = int(base // beta)
    hi = 2 * base - lo
    if hi >= n - window:
        hi = n - window
        lo = 2 * base - hi
    step = (hi - lo) // (n_layers - 1)
    return hi - layer * step


def _pyramid(rule: "_Rule", p: dict, n_layers: int):
    if p.get("schedule", "official") != "official":
        raise rule.fail("only pyramid(schedule=official) (KVCache-Factory's schedule) is bridged")

    def kept(n: int, layer: int) -> int:
        k = resolve_budget(p["k"], n)
        window = min(p["window"], n)
        if n <= k:
            return n
        if k <= window:
            raise PlanError(f"rule `{rule.text}`: k={k} fits inside the window ({window}); "
                            "kvpress would keep arbitrary window entries")
        budget = pyramid_prefix_budget(k, window, p["beta"], layer, n_layers, n)
        return window + max(0, min(budget, n - window))

    return MaxPoolSnapKVPress(window_size=p["window"], kernel_size=p["pool"]), kept


def _scorer(rule: _Rule, call: dict, notes: list, n_layers: int):
    """The select press of a pipeline: (kvpress scorer, kept count per prompt length)."""
    name, p = call["name"], call["params"]
    if name == "snap":
        cls = kp.SnapKVPress if p["reduce"] == "avg" else MaxPoolSnapKVPress
        return cls(window_size=p["window"], kernel_size=p["pool"]), _budget_count(p["k"], name)
    if name == "knorm":
        return kp.KnormPress(), _budget_count(p["k"], name)
    if name == "tova":
        return kp.TOVAPress(), _budget_count(p["k"], name)
    if name == "keydiff":
        press = kp.KeyDiffPress()
        if p["block"]:
            press = kp.BlockPress(press=press, block_size=p["block"])
        return press, _budget_count(p["k"], name)
    if name == "expected":
        press = kp.ExpectedAttentionPress(
            n_future_positions=p["future"],
            n_sink=p["sink"],
            use_covariance=p["cov"],
            use_vnorm=p["vnorm"],
            epsilon=p["eps"],
        )
        return press, _budget_count(p["k"], name)
    if name == "random":
        notes.append(
            f"`{rule.text}`: kvpress's RandomPress draws with torch's generator (seed {p['seed']}); "
            "it keeps as many entries as kvpolicy, at other positions"
        )
        return kp.RandomPress(seed=p["seed"]), _budget_count(p["k"], name)
    if name == "window":
        if p.get("rerotate"):
            raise rule.fail("window(rerotate=true) re-indexes positions while decoding; kvpress's "
                            "KeyRerotationPress does so at prefill only. Use rerotate=false")
        sink, recent = p["sink"], p["recent"]
        return kp.StreamingLLMPress(n_sink=sink), lambda length, _: sink + resolve_budget(recent, length)
    if name == "adakv":
        if p["normalize"]:
            raise rule.fail("adakv(normalize=true) rescales each head's scores (KVCache-Factory); "
                            "kvpress's AdaKVPress has no normalisation. Use adakv(normalize=false)")
        notes.append(
            f"`{rule.text}`: kvpress's AdaKVPress pins int(floor·k) entries per head and prunes the "
            "layer's lowest scores; kvpolicy gives head h round(count_h·(1−floor) + floor·k) "
            "(KVCache-Factory). Head budgets differ; kvpress masks evicted keys (no memory freed)"
        )
        scorer = MaxPoolSnapKVPress(window_size=p["window"], kernel_size=p["pool"])
        return kp.AdaKVPress(press=scorer, alpha_safeguard=p["floor"]), _budget_count(p["k"], name)
    if name == "h2o":
        raise rule.fail("h2o evicts at every decoding step; kvpress's ObservedAttentionPress scores "
                        "once at prefill and needs eager attention. No exact counterpart")
    if name == "kvzip":
        raise rule.fail("kvpress's KVzipPress scores and cuts the whole model at once: kvzip is "
                        "bridged only as the plan's one rule (`else -> kvzip(...)`), alone")
    if name == "pyramid":
        return _pyramid(rule, p, n_layers)
    raise rule.fail(f"kvpress has no press for `{name}`")


QUERY_FREE = {"knorm", "keydiff", "random", "window"}


@dataclass
class PromptBudgetDecodingPress(kp.DecodingPress):
    """kvpress's DecodingPress brought back to the rule's budget resolved against the prompt
    length (kvpolicy's `decoding(every=N)`), which the prefill press records in `prompt`."""

    kept: Any = None
    prompt: Any = None

    def _resolve_target_size(self, kwargs) -> int:
        return self.kept(self.prompt["length"], 0)


def _decoding(rule: _Rule, head: dict, p: dict, prefill, kept, notes: list, n_layers: int):
    """`X + decoding(every=N)`: X at prefill, then X over the whole cache every N steps."""
    if p.get("every") is None:
        raise rule.fail("decoding(recent=R) keeps a ring for generated tokens; kvpress has none")
    base, _ = _scorer(rule, head, [], n_layers)
    if head["name"] not in QUERY_FREE:
        notes.append(
            f"`{rule.text}`: kvpress's DecodingPress hands the buffered generated tokens to "
            f"`{head['name']}`, whose queries it rotates with the current step's RoPE (the call's "
            "position embeddings), not each token's; kvpolicy rotates each at its own position"
        )
    prompt: dict = {}
    prefill.prompt = prompt
    decoding = PromptBudgetDecodingPress(
        base_press=base,
        compression_interval=p["every"],
        hidden_states_buffer_size=256,
        kept=kept,
        prompt=prompt,
    )
    return kp.PrefillDecodingPress(prefilling_press=prefill, decoding_press=decoding)


def _pipeline_press(rule: _Rule, notes: list, n_layers: int):
    """One rule's pipeline as a kvpress press, or None for `full`."""
    pipeline = rule.rule["pipeline"]
    if not pipeline or (len(pipeline) == 1 and pipeline[0]["name"] == "full"):
        return None
    head, rest = pipeline[0], pipeline[1:]
    if head["role"] != "select":
        raise rule.fail(f"a pipeline must start with a select press, not `{head['name']}`")
    decode_roll = head["name"] == "window" and head["params"].get("decode") in (None, "roll")
    press, kept = _scorer(rule, head, notes, n_layers)
    if any(call["name"] in FLOOR_ROUNDED for call in rest):
        kept = _budget_count(head["params"]["k"], "critical")
    thresholded = False
    decoding = None
    for call in rest:
        name, p = call["name"], call["params"]
        if name == "decoding":
            decoding = p
            continue
        if name == "chunkkv":
            press = kp.ChunkKVPress(press=press, chunk_length=p["chunk"])
        elif name == "critical":
            if p["adaptive"]:
                press = kp.CriticalAdaKVPress(
                    press=press,
                    alpha_safeguard=p["safeguard"],
                    epsilon=p["eps"],
                    first_stage_ratio=p["first"],
                )
            else:
                press = kp.CriticalKVPress(press=press, epsilon=p["eps"], first_stage_ratio=p["first"])
        elif name == "adaptive":
            press = kp.AdaKVPress(press=press, alpha_safeguard=p["safeguard"])
        elif name == "dms":
            press = kp.DMSPress(press=press, threshold=p["threshold"], sliding_window_size=p["window"])
            thresholded = True
        else:
            raise rule.fail(f"`{name}` has no kvpress counterpart in a pipeline yet")
    if thresholded or isinstance(press, (kp.CriticalAdaKVPress, kp.AdaKVPress)):
        notes.append(
            f"`{rule.text}`: memory: kvpress masks the keys this rule evicts per head (a fake key "
            "at decode time) and frees no memory; kvpolicy's ragged cache frees them"
        )
    if thresholded:
        return press  # DMS keeps what passes its threshold; the scorer's budget plays no part
    press = KeepBudget(press=press, kept=kept)
    if decoding is not None:
        return _decoding(rule, head, decoding, press, kept, notes, n_layers)
    if decode_roll:
        return _rolling_window(rule, head["params"], press, notes)
    return press


def _rolling_window(rule: _Rule, p: dict, prefill_press, notes: list):
    recent = p["recent"]
    if "tokens" not in recent:
        raise rule.fail("a rolling window with a budget relative to the prompt has no fixed "
                        "kvpress target size; write recent as a number of tokens or decode=grow")
    notes.append(
        f"`{rule.text}`: while decoding, kvpress's DecodingPress trims the window after each step, "
        "so a step attends to one entry more than kvpolicy's ring (sink + recent)"
    )
    decoding = kp.DecodingPress(
        base_press=kp.StreamingLLMPress(n_sink=p["sink"]),
        compression_interval=1,
        target_size=p["sink"] + recent["tokens"],
        hidden_states_buffer_size=0,
    )
    return kp.PrefillDecodingPress(prefilling_press=prefill_press, decoding_press=decoding)


def _matches(selector: Optional[dict], index: int) -> bool:
    if selector is None or selector["kind"] == "all":
        return True
    if selector["kind"] == "indices":
        return any(a <= index and (b is None or index <= b) for a, b in selector["ranges"])
    return False


def _led_by_detector(plan: dict, target: str, name: str) -> Optional[dict]:
    """The plan's first rule when it selects `target` ("layers"/"heads") by detector `name`."""
    first = plan["rules"][0] if plan["rules"] else None
    sel = first and first.get(target)
    return first if sel and sel["kind"] == "detector" and sel["detector"]["name"] == name else None


def _simlayerkv(plan: dict, notes: list) -> Optional[BuiltPress]:
    """`layers lazy(...) -> window(sink=S, recent=R); else -> full` is kvpress's SimLayerKVPress."""
    rules = plan["rules"]
    first = _led_by_detector(plan, "layers", "lazy")
    if first is None:
        return None
    sel = first["layers"]
    rule = _Rule(first)
    lazy = sel["detector"]["params"]
    rest_full = all(not r["pipeline"] or r["pipeline"][0]["name"] == "full" for r in rules[1:])
    pipe = first["pipeline"]
    window = pipe[0] if len(pipe) == 1 and pipe[0]["name"] == "window" else None
    if first.get("heads") or not rest_full or window is None:
        raise rule.fail("kvpress runs the lazy detector only as SimLayerKVPress: "
                        "`layers lazy -> window(sink, recent); else -> full`")
    recent = window["params"]["recent"]
    if "tokens" not in recent or lazy["threshold"] is None:
        raise rule.fail("SimLayerKVPress needs a numeric lazy threshold and a window of a fixed "
                        "number of tokens (write lazy(threshold=0.9) for Llama-3, 0.65 Llama-2, "
                        "0.8 Mistral, 0.85 Qwen)")
    n_last = 1 if lazy["at"] == "decode" else lazy["queries"]
    notes.append(
        f"`{rule.text}`: SimLayerKVPress scores laziness with the last {n_last} prompt quer"
        f"{'y' if n_last == 1 else 'ies'} at prefill"
        + (" (kvpolicy's at=decode uses the first generated token's query)" if lazy["at"] == "decode" else "")
        + f", and a lazy layer keeps {window['params']['sink']} + {recent['tokens']} − {n_last} entries"
    )
    press = kp.SimLayerKVPress(
        lazy_threshold=lazy["threshold"],
        n_last=n_last,
        n_recent=recent["tokens"],
        n_initial=window["params"]["sink"],
    )
    return BuiltPress(press, notes)


def _duo(plan: dict, notes: list) -> Optional[BuiltPress]:
    """`heads duo(ratio, qlen) -> full; else -> window(sink, recent, decode=grow)` is kvpress's
    DuoAttentionPress, its heads scored on the prompt (:class:`PromptDuoAttentionPress`)."""
    rules = plan["rules"]
    first = _led_by_detector(plan, "heads", "duo")
    if first is None:
        return None
    sel = first["heads"]
    rule = _Rule(first)
    shape = "`heads duo(...) -> full; else -> window(sink, recent, decode=grow)`"
    full = [c["name"] for c in first["pipeline"]] in (["full"], [])
    rest = rules[1:]
    pipe = rest[0]["pipeline"] if len(rest) == 1 else []
    window = pipe[0] if len(pipe) == 1 and pipe[0]["name"] == "window" else None
    if first.get("layers") or not full or window is None or rest[0].get("layers") or rest[0].get("heads"):
        raise rule.fail(f"kvpress runs the duo detector only as DuoAttentionPress: {shape}")
    w = window["params"]
    if w.get("decode") != "grow" or w.get("rerotate"):
        raise _Rule(rest[0]).fail(
            "DuoAttentionPress masks the streaming heads at prefill and lets them grow while "
            f"decoding: write window(..., decode=grow) ({shape})")
    duo = sel["detector"]["params"]
    notes.append(
        f"`{rule.text}`: heads scored on the prompt itself, as kvpolicy's duo detector does "
        "(kvpress's on-the-fly scoring averages 50 BookSum chapters, not available offline); "
        "kvpress masks the streaming heads' evicted keys and frees no memory")
    press = PromptDuoAttentionPress(head_compression_ratio=duo["ratio"], on_the_fly_scoring=True,
                                    sink=w["sink"], recent=w["recent"], q_len=duo["qlen"])
    return BuiltPress(press, notes)


def _kvzip(plan: dict, notes: list) -> Optional[BuiltPress]:
    """`else -> kvzip(k, chunk, layerwise)`, the plan's one rule, as kvpress's KVzipPress."""
    rules = plan["rules"]
    if len(rules) != 1 or [c["name"] for c in rules[0]["pipeline"]] != ["kvzip"]:
        return None
    rule = _Rule(rules[0])
    if any(rules[0].get(what) and rules[0][what]["kind"] != "all" for what in ("layers", "heads")):
        raise rule.fail("kvpress's KVzipPress runs over every layer and head: write `else -> kvzip(...)`")
    p = rules[0]["pipeline"][0]["params"]
    notes.append(
        "kvzip: the whole prompt is reconstructed, as kvpolicy does (kvpress alone leaves out the "
        "chat template's prefix); kvpress masks evicted keys and frees no memory"
    )
    press = BudgetKVzipPress(keep=p["k"], chunk_size=p["chunk"], layerwise=p["layerwise"])
    return BuiltPress(press, notes)


def _first_rule(plan: dict, layer: int, head: Optional[int]) -> Optional[dict]:
    """The first rule matching (layer, KV head); head None: a rule naming no heads."""
    for rule in plan["rules"]:
        if _matches(rule.get("layers"), layer) and (head is None or _matches(rule.get("heads"), head)):
            return rule
    return None


def _refuse_detectors(plan: dict) -> None:
    for rule in plan["rules"]:
        for what in ("layers", "heads"):
            sel = rule.get(what)
            if sel and sel["kind"] == "detector":
                raise _Rule(rule).fail(
                    f"the `{sel['detector']['name']}` detector has no kvpress counterpart in a "
                    f"{what} rule (kvpress only runs `lazy` as SimLayerKVPress)"
                )


def build_press(plan: Any, num_layers: int, num_kv_heads: Optional[int] = None) -> BuiltPress:
    """The kvpress press running `plan` (a dict or a plan file) on a model of `num_layers` layers
    with `num_kv_heads` KV heads per layer (needed when a rule names heads), and the quantized
    cache its `quant` presses stand for."""
    plan, quant = split_quant(load_plan(plan))
    built = _build(plan, num_layers, num_kv_heads)
    if quant is not None:
        built.quant = quant
        built.notes.append(quant_note(quant))
    return built


def _build(plan: dict, num_layers: int, num_kv_heads: Optional[int]) -> BuiltPress:
    if plan.get("uses"):
        raise PlanError(f"the plan loads third-party plugins ({', '.join(plan['uses'])}); "
                        "kvpress cannot run kvpolicy plugins")
    notes: list = []
    whole = _kvzip(plan, notes) or _duo(plan, notes)
    if whole is not None:
        return whole
    lazy = _simlayerkv(plan, notes)
    if lazy is not None:
        return lazy
    resolved = plan.get("resolved")
    if resolved is None:
        _refuse_detectors(plan)
    head_rules = any(r.get("heads") and r["heads"]["kind"] != "all" for r in plan["rules"])
    if head_rules and num_kv_heads is None:
        raise PlanError("the plan has head rules; give the model's number of KV heads")
    if resolved is not None:
        # `export --model`: kvpolicy resolved every (layer, KV head) on the model.
        rows = resolved["assignments"]
        if len(rows) != num_layers or len(rows[0]) != num_kv_heads:
            raise PlanError(
                f"the plan's heads were resolved on {resolved.get('model', 'another model')} "
                f"({len(rows)} layers × {len(rows[0])} KV heads); this model has {num_layers} × "
                f"{num_kv_heads}: export it again with --model set to this model"
            )
        chosen = [[None if r is None else plan["rules"][r] for r in row] for row in rows]
    else:
        heads = range(num_kv_heads) if head_rules else [None]
        chosen = [[_first_rule(plan, layer, h) for h in heads] for layer in range(num_layers)]
    distinct = {id(r): r for row in chosen for r in row if r is not None}
    built = {key: _pipeline_press(_Rule(r), notes, num_layers) for key, r in distinct.items()}
    if head_rules:
        notes.append("head rules: kvpress masks each head's evicted keys (a fake key at decode "
                     "time) and frees no memory; kvpolicy's ragged cache frees them")

    per_row: dict = {}  # layers whose heads take the same rules share one press

    def layer_press(row):
        presses = [None if r is None else built[id(r)] for r in row]
        if all(p is presses[0] for p in presses):
            return presses[0]
        key = tuple(id(r) for r in row)
        return per_row.setdefault(key, HeadRulesPress(presses=presses))

    presses = [layer_press(row) for row in chosen]
    decoding = any(isinstance(p, kp.PrefillDecodingPress) for p in built.values())
    if head_rules and decoding:
        raise PlanError("a rolling window under head rules has no kvpress counterpart "
                        "(DecodingPress trims whole layers); use window(decode=grow)")
    if all(p is presses[0] for p in presses):
        return BuiltPress(presses[0], notes, decoding)
    return BuiltPress(LayerRulesPress(presses=presses), notes, decoding)
