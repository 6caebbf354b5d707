"""Reading a compiled kvpolicy plan (`deno task check --plan P.kvp`, format ``kvpolicy-plan/1``).

The plan is plain JSON data; this module checks its shape strictly so that a plan from another
version, or a hand-edited one, fails with a message naming the field instead of a KeyError deep in
the press builder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLAN_FORMAT = "kvpolicy-plan/1"
MAX_PLAN_BYTES = 16 << 20


class PlanError(ValueError):
    """A plan that cannot be read or cannot be expressed with kvpress; the message says why."""


def load_plan(source: str | Path | dict) -> dict:
    """Reads a plan from a JSON file path (or takes an already parsed dict) and validates it."""
    if isinstance(source, dict):
        return validate_plan(source, "plan")
    path = Path(source)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PLAN_BYTES + 1)
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan ({e.strerror or e})") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: larger than {MAX_PLAN_BYTES} bytes; not a kvpolicy plan")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: not JSON ({e}); write one with `deno task check --plan P.kvp`") from None
    return validate_plan(data, str(path))


def _expect(cond: bool, where: str, field: str, what: str) -> None:
    if not cond:
        raise PlanError(f"{where}: field '{field}' {what}")


def _check_call(call: Any, where: str, field: str) -> None:
    _expect(isinstance(call, dict), where, field, "must be an object")
    _expect(isinstance(call.get("name"), str), where, f"{field}.name", "must be a string")
    _expect(isinstance(call.get("params"), dict), where, f"{field}.params", "must be an object")


def _check_selector(sel: Any, where: str, field: str) -> None:
    if sel is None:
        return
    _expect(isinstance(sel, dict), where, field, "must be an object or null")
    kind = sel.get("kind")
    _expect(kind in ("all", "indices", "detector"), where, f"{field}.kind", "must be all, indices or detector")
    if kind == "indices":
        ranges = sel.get("ranges")
        _expect(isinstance(ranges, list), where, f"{field}.ranges", "must be a list")
        for i, r in enumerate(ranges):
            ok = (
                isinstance(r, list)
                and len(r) == 2
                and isinstance(r[0], int)
                and r[0] >= 0
                and (r[1] is None or (isinstance(r[1], int) and r[1] >= r[0]))
            )
            _expect(ok, where, f"{field}.ranges[{i}]", "must be [first, last|null]")
    if kind == "detector":
        _check_call(sel.get("detector"), where, f"{field}.detector")


def validate_plan(data: Any, where: str) -> dict:
    """Checks a parsed plan's shape; returns it unchanged."""
    _expect(isinstance(data, dict), where, "(top level)", "must be a JSON object")
    fmt = data.get("format")
    if fmt != PLAN_FORMAT:
        raise PlanError(
            f"{where}: field 'format' is {json.dumps(fmt)}, this bridge reads {PLAN_FORMAT!r}; "
            "recompile the policy with the kvpolicy version that matches this bridge"
        )
    _expect(isinstance(data.get("rules"), list), where, "rules", "must be a list")
    _expect(isinstance(data.get("uses", []), list), where, "uses", "must be a list")
    for i, rule in enumerate(data["rules"]):
        f = f"rules[{i}]"
        _expect(isinstance(rule, dict), where, f, "must be an object")
        _expect(isinstance(rule.get("text"), str), where, f"{f}.text", "must be a string")
        _expect(isinstance(rule.get("isElse"), bool), where, f"{f}.isElse", "must be a boolean")
        _check_selector(rule.get("layers"), where, f"{f}.layers")
        _check_selector(rule.get("heads"), where, f"{f}.heads")
        pipeline = rule.get("pipeline")
        _expect(isinstance(pipeline, list), where, f"{f}.pipeline", "must be a list")
        for j, press in enumerate(pipeline):
            _check_call(press, where, f"{f}.pipeline[{j}]")
            _expect(
                press.get("role") in ("select", "rescore", "augment", "store"),
                where,
                f"{f}.pipeline[{j}].role",
                "must be select, rescore, augment or store",
            )
    resolved = data.get("resolved")
    if resolved is not None:
        _expect(isinstance(resolved, dict), where, "resolved", "must be an object")
        rows = resolved.get("assignments")
        ok = isinstance(rows, list) and rows and all(
            isinstance(row, list) and row and len(row) == len(rows[0])
            and all(r is None or (isinstance(r, int) and 0 <= r < len(data["rules"])) for r in row)
            for row in rows
        )
        _expect(bool(ok), where, "resolved.assignments", "must be [layer][kv head] rule indices or null")
    return data
