"""Independent reference for GGUF checkpoints: Hugging Face transformers loads the GGUF
(dequantizing through the `gguf` package and undoing llama.cpp's Q/K permutation itself), runs
greedy decoding in float32 on given prompt ids, and writes the greedy ids and the logits of every
step.

usage: python3 hf_gguf_reference.py MODEL.gguf CASES.json OUT_DIR
CASES.json: [{"name": ..., "ids": [...], "steps": N}, ...]
OUT_DIR/<name>.json: {"greedy_ids": [...], "margins": [...]} and OUT_DIR/<name>.f32: the
float32 logits of the last prompt position and of each greedy step (steps x vocab, row-major).
"""

import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging

logging.set_verbosity_error()
logging.disable_progress_bar()


def main():
    gguf_path, cases_path, out_dir = sys.argv[1:4]
    folder, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    with open(cases_path) as f:
        cases = json.load(f)
    for case in cases:
        ids = torch.tensor([case["ids"]])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=case["steps"], do_sample=False,
                                 output_logits=True, return_dict_in_generate=True,
                                 eos_token_id=None, pad_token_id=0)
        rows = torch.cat(out.logits, dim=0).to(torch.float32).numpy()
        top2 = np.sort(rows, axis=1)[:, -2:]
        greedy = out.sequences[0, len(case["ids"]):].tolist()
        with open(os.path.join(out_dir, case["name"] + ".json"), "w") as f:
            json.dump({"greedy_ids": greedy,
                       "margins": (top2[:, 1] - top2[:, 0]).astype(float).tolist()}, f)
        rows.astype("<f4").tofile(os.path.join(out_dir, case["name"] + ".f32"))


if __name__ == "__main__":
    main()
