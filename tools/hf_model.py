"""The model of a .gguf file or a Hugging Face folder, loaded by transformers in float32 for the
reference tools (hf_answers.py, keydiff_thresholds.py); a GGUF is dequantized through `gguf`."""

import os

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging

logging.set_verbosity_error()
logging.disable_progress_bar()


def load_model(model_path):
    """`model_path` (a .gguf file or a model folder) as a float32 causal LM in eval mode."""
    if os.path.isdir(model_path):
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    else:
        folder, name = os.path.split(os.path.abspath(model_path))
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval()
