"""Unit tests of the bridge without a model: plan validation, budgets, press building, refusals."""

import json

import kvpress as kp
import pytest

from kvpolicy_kvpress import PlanError, build_press, load_plan, resolve_budget
from kvpolicy_kvpress.budget import KeepBudget, ratio_keeping
from kvpolicy_kvpress.build import pyramid_prefix_budget
from kvpolicy_kvpress.rules import LayerRulesPress
from kvpolicy_kvpress.snap_max import MaxPoolSnapKVPress


def plan(*rules, uses=()):
    return {"format": "kvpolicy-plan/1", "name": None, "sourceHash": "sha256:0", "uses": list(uses),
            "detectors": [], "rules": list(rules), "unmatched": "full"}


def rule(text, pipeline, layers=None, heads=None, is_else=None):
    return {"line": 1, "text": text, "isElse": layers is None and heads is None if is_else is None else is_else,
            "layers": layers, "heads": heads, "pipeline": pipeline}


def press(name, role="select", **params):
    return {"name": name, "role": role, "when": "prefill", "params": params}


def test_budgets_match_kvpolicy_rounding():
    assert resolve_budget({"tokens": 1024}, 10) == 1024
    assert resolve_budget({"fraction": 0.25}, 10) == 3  # 2.5 rounds half up
    assert resolve_budget({"fraction": 0.25}, 10, "floor") == 2  # kvpress's int(L·(1−r))
    assert resolve_budget({"fraction": 0.001}, 10) == 1  # never an empty cache
    assert resolve_budget({"max": [{"tokens": 251}, {"fraction": 0.1}]}, 4000) == 400
    assert resolve_budget({"min": [{"fraction": 0.2}, {"tokens": 4096}]}, 1000) == 200
    with pytest.raises(PlanError, match="is not"):
        resolve_budget({"percent": 3}, 10)


@pytest.mark.parametrize("length", [1, 7, 100, 4096, 131072])
def test_ratio_keeping_gives_the_exact_count(length):
    for kept in {1, length // 3, length - 1} - {0}:
        assert kp.utils.compute_n_kept(length, ratio_keeping(length, kept)) == kept


def test_bad_plans_name_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="not JSON"):
        load_plan(bad)
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.json")
    other = plan()
    other["format"] = "kvpolicy-plan/0"
    with pytest.raises(PlanError, match="field 'format'.*recompile"):
        load_plan(other)
    broken = plan(rule("else -> snap", [press("snap", role="nonsense")]))
    with pytest.raises(PlanError, match=r"rules\[0\]\.pipeline\[0\]\.role"):
        load_plan(broken)
    ranges = plan(rule("layers 3..1 -> full", [], layers={"kind": "indices", "ranges": [[3, 1]]}))
    with pytest.raises(PlanError, match=r"rules\[0\]\.layers\.ranges\[0\]"):
        load_plan(ranges)
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(PlanError, match="JSON object"):
        load_plan(tmp_path / "list.json")


def test_whole_model_rule_is_the_press_itself():
    built = build_press(plan(rule("else -> snap(k=64)", [press("snap", k={"tokens": 64}, window=8, pool=5,
                                                                    reduce="avg")])), 4)
    assert isinstance(built.press, KeepBudget)
    assert type(built.press.press) is kp.SnapKVPress
    assert (built.press.press.window_size, built.press.press.kernel_size) == (8, 5)
    maxed = build_press(plan(rule("else -> snap", [press("snap", k={"tokens": 64}, window=8, pool=5,
                                                           reduce="max")])), 4)
    assert type(maxed.press.press) is MaxPoolSnapKVPress


def test_layer_rules_give_each_layer_its_press():
    built = build_press(plan(
        rule("layers 0..1 -> knorm(k=8)", [press("knorm", k={"tokens": 8})],
             layers={"kind": "indices", "ranges": [[0, 1]]}),
        rule("layers 3.. -> full", [press("full")], layers={"kind": "indices", "ranges": [[3, None]]}),
        rule("else -> tova(k=50%)", [press("tova", k={"fraction": 0.5})]),
    ), 5)
    assert isinstance(built.press, LayerRulesPress)
    kinds = [None if p is None else type(p.press).__name__ for p in built.press.presses]
    assert kinds == ["KnormPress", "KnormPress", "TOVAPress", None, None]


def test_pipelines_compose_as_kvpress_wrappers():
    snap = press("snap", k={"fraction": 0.25}, window=64, pool=5, reduce="avg")
    chunk = build_press(plan(rule("else", [snap, press("chunkkv", role="rescore", chunk=20)])), 2)
    assert isinstance(chunk.press.press, kp.ChunkKVPress) and chunk.press.press.chunk_length == 20
    critical = press("critical", role="rescore", eps=1e-4, first=0.5, adaptive=True, safeguard=0.2)
    ada = build_press(plan(rule("else", [snap, critical])), 2)
    assert isinstance(ada.press.press, kp.CriticalAdaKVPress)
    adaptive = build_press(plan(rule("else", [snap, press("adaptive", role="rescore", safeguard=0.3)])), 2)
    assert isinstance(adaptive.press.press, kp.AdaKVPress) and adaptive.press.press.alpha_safeguard == 0.3
    dms = build_press(plan(rule("else", [press("keydiff", k={"fraction": 1}, block=0),
                                         press("dms", role="rescore", threshold=-0.2, window=128)])), 2)
    assert isinstance(dms.press, kp.DMSPress) and dms.press.threshold == -0.2


@pytest.mark.parametrize("pipeline, pattern", [
    ([press("h2o", heavy={"fraction": 0.1}, recent={"fraction": 0.1})], "h2o evicts at every decoding step"),
    ([press("window", sink=4, recent={"tokens": 64}, decode="roll", rerotate=True)], "rerotate"),
    ([press("window", sink=4, recent={"fraction": 0.1}, decode="roll", rerotate=False)], "relative to the prompt"),
    ([press("adakv", k={"tokens": 64}, floor=0.2, window=32, pool=7, normalize=True)], "normalize=false"),
    ([press("knorm", k={"tokens": 8}), press("compensate", role="augment")], "`compensate` has no kvpress"),
    ([press("knorm", k={"tokens": 8}), press("decoding", role="augment", every=None, recent=16)],
     "ring for generated tokens"),
])
def test_refusals_name_the_rule(pipeline, pattern):
    with pytest.raises(PlanError, match="rule `the rule`.*" + pattern):
        build_press(plan(rule("the rule", pipeline)), 2)


def test_detectors_and_plugins_are_refused_or_mapped():
    retrieval = {"kind": "detector", "detector": {"name": "retrieval", "params": {}}}
    with pytest.raises(PlanError, match="`retrieval` detector has no kvpress counterpart"):
        build_press(plan(rule("heads retrieval -> full", [press("full")], heads=retrieval),
                         rule("else", [press("knorm", k={"tokens": 8})])), 2)
    with pytest.raises(PlanError, match="third-party plugins"):
        build_press(plan(uses=["./mine.ts"]), 2)
    lazy = {"kind": "detector", "detector": {"name": "lazy", "params": {
        "threshold": 0.9, "sink": 4, "recent": {"tokens": 1024}, "at": "decode", "queries": 32}}}
    window = press("window", sink=4, recent={"tokens": 1024}, decode="grow", rerotate=False)
    built = build_press(plan(rule("layers lazy -> window", [window], layers=lazy),
                             rule("else -> full", [press("full")])), 2)
    assert isinstance(built.press, kp.SimLayerKVPress)
    assert (built.press.lazy_threshold, built.press.n_recent, built.press.n_last) == (0.9, 1024, 1)
    assert "first generated token" in built.notes[0]
    auto = json.loads(json.dumps(lazy))
    auto["detector"]["params"]["threshold"] = None
    with pytest.raises(PlanError, match="numeric lazy threshold"):
        build_press(plan(rule("layers lazy -> window", [window], layers=auto)), 2)


def test_pyramid_schedule_is_kvcache_factorys():
    # k = 128, window 32, beta 20, 32 layers, a long prompt: 188 ... 33 (floors), mean 110.5.
    budgets = [pyramid_prefix_budget(128, 32, 20, layer, 32, 10_000) for layer in range(32)]
    assert budgets[0] == 188 and budgets[-1] == 33 and sum(budgets) / 32 == 110.5
    assert pyramid_prefix_budget(128, 32, 20, 5, 32, 150) == 96  # k <= N < 2(k - w): uniform
    assert pyramid_prefix_budget(128, 32, 20, 5, 32, 100) == 68  # N < k: everything
    # The clamp: max >= N - w gives max = N - w, min = 2B - max.
    assert pyramid_prefix_budget(128, 32, 20, 0, 4, 200) == 168
    assert pyramid_prefix_budget(128, 32, 20, 3, 4, 200) == 168 - 3 * ((168 - 24) // 3)


def test_head_rules_become_per_head_presses():
    from kvpolicy_kvpress.heads import HeadRulesPress

    knorm = press("knorm", k={"tokens": 8})
    built = build_press(plan(
        rule("heads 0 -> full", [press("full")], heads={"kind": "indices", "ranges": [[0, 0]]}),
        rule("else -> knorm(k=8)", [knorm]),
    ), 2, 3)
    assert isinstance(built.press, HeadRulesPress)
    assert built.press.presses[0] is None and built.press.presses[1] is built.press.presses[2]
    assert any("frees no memory" in n for n in built.notes)
    with pytest.raises(PlanError, match="number of KV heads"):
        build_press(plan(rule("heads 0 -> full", [press("full")],
                              heads={"kind": "indices", "ranges": [[0, 0]]})), 2)
    roll = press("window", sink=4, recent={"tokens": 16}, decode=None, rerotate=False)
    with pytest.raises(PlanError, match="rolling window under head rules"):
        build_press(plan(rule("heads 0 -> window", [roll], heads={"kind": "indices", "ranges": [[0, 0]]})),
                    2, 2)


def test_resolved_head_tables_are_checked_and_used():
    retrieval = {"kind": "detector", "detector": {"name": "retrieval", "params": {}}}
    rules = [rule("heads retrieval -> full", [press("full")], heads=retrieval),
             rule("else -> knorm(k=8)", [press("knorm", k={"tokens": 8})])]
    resolved = plan(*rules)
    resolved["resolved"] = {"model": "m", "assignments": [[0, 1], [1, 1]]}
    built = build_press(resolved, 2, 2)
    assert built.press.presses[0].presses[0] is None  # layer 0: head 0 retrieval, head 1 knorm
    assert built.press.presses[1].press.__class__.__name__ == "KnormPress"  # layer 1: all knorm
    with pytest.raises(PlanError, match=r"resolved on m \(2 layers × 2 KV heads\); this model has 3"):
        build_press(resolved, 3, 2)
    bad = plan(*rules)
    bad["resolved"] = {"model": "m", "assignments": [[0, 7]]}
    with pytest.raises(PlanError, match="resolved.assignments"):
        load_plan(bad)


def test_kvzip_is_the_whole_model_press_with_kvpolicys_budget():
    from kvpolicy_kvpress.kvzip import BudgetKVzipPress, kvzip_ratio

    kvzip = press("kvzip", k={"fraction": 0.25}, chunk=512, layerwise=True)
    built = build_press(plan(rule("else -> kvzip", [kvzip])), 4)
    assert isinstance(built.press, BudgetKVzipPress)
    assert (built.press.chunk_size, built.press.layerwise, built.press.n_sink) == (512, True, 4)
    assert "whole prompt is reconstructed" in built.notes[0]
    # r = 1 − f for a fraction; 1 − ⌊k⌋/L for a count (kvpolicy's selectKvzip); ≤ 0: nothing goes.
    assert kvzip_ratio({"fraction": 0.25}, 1000) == 0.75
    assert kvzip_ratio({"tokens": 100}, 400) == 0.75
    assert kvzip_ratio({"tokens": 500}, 400) <= 0
    # Anywhere but as the plan's one rule, alone, it is refused with the rule named.
    with pytest.raises(PlanError, match="rule `layers 0 -> kvzip`.*only as the plan's one rule"):
        build_press(plan(rule("layers 0 -> kvzip", [kvzip], layers={"kind": "indices", "ranges": [[0, 0]]}),
                         rule("else -> knorm", [press("knorm", k={"tokens": 8})])), 4)
    with pytest.raises(PlanError, match="only as the plan's one rule"):
        build_press(plan(rule("else -> kvzip + dms", [kvzip, press("dms", role="rescore", threshold=0.1,
                                                                   window=8)])), 4)
    with pytest.raises(PlanError, match="every layer and head"):
        build_press(plan(rule("layers 0 -> kvzip", [kvzip], layers={"kind": "indices", "ranges": [[0, 0]]})), 4)


def test_duo_heads_with_a_growing_window_are_duoattentionpress():
    from kvpolicy_kvpress.duo import PromptDuoAttentionPress

    duo = {"kind": "detector", "detector": {"name": "duo", "params": {"ratio": 0.25, "qlen": 64}}}
    grow = press("window", sink=4, recent={"tokens": 20}, decode="grow", rerotate=False)
    built = build_press(plan(rule("heads duo -> full", [press("full")], heads=duo),
                             rule("else -> window", [grow])), 2, 2)
    assert isinstance(built.press, PromptDuoAttentionPress)
    p = built.press
    assert (p.head_compression_ratio, p.q_len, p.sink, p.recent) == (0.25, 64, 4, {"tokens": 20})
    assert "scored on the prompt itself" in built.notes[0] and "frees no memory" in built.notes[0]
    roll = dict(grow, params=dict(grow["params"], decode="roll"))
    with pytest.raises(PlanError, match="rule `else -> window`.*decode=grow"):
        build_press(plan(rule("heads duo -> full", [press("full")], heads=duo),
                         rule("else -> window", [roll])), 2, 2)
    with pytest.raises(PlanError, match="rule `heads duo -> knorm`.*only as DuoAttentionPress"):
        build_press(plan(rule("heads duo -> knorm", [press("knorm", k={"tokens": 8})], heads=duo),
                         rule("else -> window", [grow])), 2, 2)


def test_quant_is_one_quantized_cache_for_the_whole_model():
    from kvpolicy_kvpress.quant import QuantSpec

    quant = press("quant", role="store", bits=4, group=32, residual=64, kbits=None, vbits=None)
    knorm = press("knorm", k={"tokens": 8})
    built = build_press(plan(rule("else -> knorm + quant", [knorm, quant])), 2)
    assert built.quant == QuantSpec(4, 32, 64)
    assert isinstance(built.press, KeepBudget)  # the selection, the cache apart
    assert "re-quantizes the whole cache" in built.notes[-1]
    alone = build_press(plan(rule("else -> quant", [quant])), 2)
    assert alone.press is None and alone.quant == QuantSpec(4, 32, 64)
    with pytest.raises(PlanError, match="rule `layers 0 -> knorm`.*every rule needs the same `quant`"):
        build_press(plan(rule("layers 0 -> knorm", [knorm], layers={"kind": "indices", "ranges": [[0, 0]]}),
                         rule("else -> quant", [quant])), 2)
    two = dict(quant, params=dict(quant["params"], bits=2))
    with pytest.raises(PlanError, match="different settings"):
        build_press(plan(rule("layers 0 -> quant", [two], layers={"kind": "indices", "ranges": [[0, 0]]}),
                         rule("else -> quant", [quant])), 2)
    mixed = dict(quant, params=dict(quant["params"], kbits=2))
    with pytest.raises(PlanError, match="one bit width"):
        build_press(plan(rule("else -> quant", [mixed])), 2)
    eight = dict(quant, params=dict(quant["params"], bits=8))
    with pytest.raises(PlanError, match="2 or 4 bits"):
        build_press(plan(rule("else -> quant", [eight])), 2)
    class Model:
        class config:
            head_dim = 48
    with pytest.raises(PlanError, match=r"quant\(group=32\).*head dimension \(48\)"):
        QuantSpec(4, 32, 64).make_cache(Model)
    with pytest.raises(PlanError, match="needs an `else` rule"):
        build_press(plan(rule("layers 0.. -> quant", [quant], layers={"kind": "indices", "ranges": [[0, None]]})), 2)
