"""`python -m kvpolicy_kvpress` — run a kvpolicy plan on kvpress.

    python -m kvpolicy_kvpress run  --plan P.json --model M (--prompt TEXT | --prompt-ids 1,2,3)
                                    [--max-new-tokens N] [--json]
    python -m kvpolicy_kvpress kept --plan P.json [--plan Q.json ...] --model M --prompt-ids 1,2,3

`kept` prints, per plan, the prompt positions each (layer, KV head) kept and the greedy tokens, as
JSON (the cross-engine agreement tests read it). Exit 0 ok, 1 bad input (a clear message).
"""

from __future__ import annotations

import argparse
import json
import sys

from .build import build_press
from .engine import generate, kept_positions, load_model, prompt_ids
from .plan import PlanError, load_plan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kvpolicy_kvpress", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "kept"):
        p = sub.add_parser(name)
        p.add_argument("--plan", action="append", required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--prompt")
        p.add_argument("--prompt-ids")
        p.add_argument("--max-new-tokens", type=int, default=16)
        p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        plans = [load_plan(p) for p in args.plan]
        model = load_model(args.model)
        ids, _ = prompt_ids(model, args.model, args.prompt, args.prompt_ids)
        layers, kv_heads = model.config.num_hidden_layers, model.config.num_key_value_heads
        built = [build_press(plan, layers, kv_heads) for plan in plans]
        if args.command == "kept":
            out = []
            for b in built:
                sizes: dict = {}
                kept = kept_positions(model, b, ids, sizes)
                tokens = generate(model, b, ids, args.max_new_tokens)
                out.append({"kept": kept, "tokens": tokens, "notes": b.notes, **sizes})
            print(json.dumps(out))
            return 0
        b = built[0]
        for note in b.notes:
            print(f"note: {note}", file=sys.stderr)
        tokens = generate(model, b, ids, args.max_new_tokens)
        if args.json:
            print(json.dumps({"prompt_tokens": len(ids), "tokens": tokens}))
        else:
            print(" ".join(str(t) for t in tokens))
        return 0
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
