"""Greedy answers from Hugging Face transformers, the independent reference for an evaluation's
uncompressed answers (tools/compare_answers.ts writes the cases and reads the answers back).

usage: python3 hf_answers.py MODEL CASES.json OUT.jsonl
MODEL: a .gguf file (transformers dequantizes it through the `gguf` package) or a Hugging Face
folder. CASES.json: [{"ids": [...], "max_new_tokens": N, "stop_ids": [...]}, ...]; float32,
greedy, generation ends at a stop id (not included) or after N tokens.
OUT.jsonl: one line per case as it finishes: {"ids": [...the generated ids...], "s": seconds}.
"""

import json
import sys
import time

import torch
from hf_model import load_model


def main():
    model_path, cases_path, out_path = sys.argv[1:4]
    model = load_model(model_path)
    with open(cases_path) as f:
        cases = json.load(f)
    with open(out_path, "w") as out:
        for case in cases:
            ids = torch.tensor([case["ids"]])
            start = time.time()
            with torch.no_grad():
                seq = model.generate(ids, max_new_tokens=case["max_new_tokens"], do_sample=False,
                                     eos_token_id=case["stop_ids"] or None, pad_token_id=0)
            new = seq[0, len(case["ids"]):].tolist()
            if new and new[-1] in case["stop_ids"]:
                new = new[:-1]
            out.write(json.dumps({"ids": new, "s": round(time.time() - start, 1)}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
