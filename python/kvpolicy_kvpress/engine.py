"""Running a built press on a Hugging Face model: greedy generation as kvpolicy's `run` does it, and
the prompt positions each (layer, KV head) kept, for comparison with `run --json --trace`.

Generation: the whole prompt is prefilled under the press (query-aware, as `run --prompt`), the
first token is the argmax of the prompt's last logits, and new tokens take positions N, N+1, …
(the original prompt length, not the compressed one). Greedy, lowest id on ties (torch.argmax).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

from .plan import PlanError


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model(path: str, device_map=None, dtype: str = "float32"):
    """A Hugging Face folder, a `.gguf` file, or a folder holding exactly one `.gguf`.

    `device_map` goes to `from_pretrained` (``"auto"`` spreads the model over the GPUs with
    accelerate); the default keeps it whole on the CPU, in f32.
    """
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    p = Path(path)
    kwargs = {"dtype": DTYPES[dtype]}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if p.is_file() and p.suffix == ".gguf":
        folder, gguf = p.parent, p.name
    elif p.is_dir() and not (p / "config.json").exists():
        found = sorted(p.glob("*.gguf"))
        if len(found) != 1:
            raise PlanError(f"{path}: no config.json and not exactly one .gguf file")
        folder, gguf = p, found[0].name
    elif p.is_dir():
        folder, gguf = p, None
    else:
        raise PlanError(f"{path}: not a model folder or a .gguf file")
    if gguf:
        kwargs["gguf_file"] = gguf
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise PlanError(f"{path}: kvpress's transformers cannot load this model ({e})") from None
    # Presses that load the tokenizer by the model's name (KVzip) need the GGUF file's name too.
    model.kvpolicy_gguf_file = gguf
    config = model.config
    if getattr(config, "head_dim", None) is None:
        # kvpress reads config.head_dim (CriticalKV, ExpectedAttention); older configs derive it.
        config.head_dim = config.hidden_size // config.num_attention_heads
    return model.eval()


def prompt_ids(model, path: str, text=None, ids_text=None) -> tuple:
    """The prompt's token ids (from `--prompt-ids` or the model's tokenizer), and the tokenizer."""
    tokenizer = None
    if ids_text is not None:
        try:
            ids = [int(t) for t in ids_text.split(",") if t.strip()]
        except ValueError:
            raise PlanError(f"--prompt-ids: {ids_text[:40]!r} is not a list of token ids") from None
    elif text is not None:
        from transformers import AutoTokenizer

        p = Path(path)
        kwargs = {"gguf_file": p.name} if p.suffix == ".gguf" else {}
        folder = p.parent if kwargs else p
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError) as e:
            raise PlanError(f"{path}: no tokenizer ({e}); give --prompt-ids") from None
        ids = tokenizer(text)["input_ids"]
    else:
        raise PlanError("give --prompt TEXT or --prompt-ids 1,2,3")
    vocab = model.config.vocab_size
    if not ids:
        raise PlanError("the prompt is empty")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise PlanError(f"--prompt-ids: id {bad[0]} is outside the vocabulary (0..{vocab - 1})")
    return ids, tokenizer


def _prefill(model, press, ids: list, quant=None) -> tuple:
    cache = DynamicCache() if quant is None else quant.make_cache(model)
    input_ids = torch.tensor([ids], device=model.device)
    with torch.no_grad(), (press(model) if press is not None else contextlib.nullcontext()):
        out = model(input_ids=input_ids, past_key_values=cache, logits_to_keep=1)
    return cache, out.logits[0, -1]


def generate(model, built, ids: list, max_new_tokens: int, stop_ids=()) -> list:
    """Greedy continuation of `ids` under `built` (a :class:`BuiltPress`)."""
    press = built.press
    cache, logits = _prefill(model, press, ids, built.quant)
    tokens = [int(logits.argmax())]
    decode_ctx = press(model) if press is not None and built.decoding else contextlib.nullcontext()
    with torch.no_grad(), decode_ctx:
        for step in range(max_new_tokens - 1):
            if tokens[-1] in stop_ids:
                break
            position = torch.tensor([[len(ids) + step]], device=model.device)
            out = model(
                input_ids=torch.tensor([[tokens[-1]]], device=model.device),
                past_key_values=cache,
                position_ids=position,
                cache_position=position[0],
            )
            tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


def _tensor_bytes(t) -> int:
    """Bytes of a tensor, or of a quanto tensor's packed codes, scales and shifts."""
    if t is None:
        return 0
    if isinstance(t, torch.Tensor) and type(t) is torch.Tensor:
        return t.nbytes
    parts = [getattr(t, name, None) for name in ("_data", "_scale", "_shift")]
    return sum(_tensor_bytes(p) for p in parts if p is not None)


def cache_bytes(cache) -> int:
    """Bytes the cache's key and value tensors hold (what kvpress really keeps in memory): the
    full-precision tensors, and a quantized cache's packed codes with their scales and shifts."""
    total = 0
    for layer in cache.layers:
        total += _tensor_bytes(layer.keys) + _tensor_bytes(layer.values)
        total += _tensor_bytes(getattr(layer, "_quantized_keys", None))
        total += _tensor_bytes(getattr(layer, "_quantized_values", None))
    return total


def kept_positions(model, built, ids: list, sizes: dict | None = None) -> list:
    """Per layer, per KV head, the sorted prompt positions the press kept after prefill.

    Compressed rows are matched to the full cache's rows (prefill computes the same keys with or
    without a press, since compression runs after each layer's attention); head-wise presses that
    mask instead of removing (AdaKV, CriticalAdaKV, DMS) are read from `masked_key_indices`.
    """
    full, _ = _prefill(model, None, ids)
    if sizes is not None and built.quant is not None:
        sizes["kv_bytes"] = cache_bytes(_prefill(model, built.press, ids, built.quant)[0])
    # The selection runs before quantization, so the positions are read from a plain cache.
    cache, _ = _prefill(model, built.press, ids)
    if sizes is not None:
        sizes.setdefault("kv_bytes", cache_bytes(cache))
        sizes["full_kv_bytes"] = cache_bytes(full)
    layers = model.model.layers
    result = []
    for layer, attn in enumerate(l.self_attn for l in layers):
        keys_full = full.layers[layer].keys[0]
        keys = cache.layers[layer].keys[0]
        masked = getattr(attn, "masked_key_indices", None)
        dropped = set()
        if masked is not None:
            dropped = set(zip(masked[1].tolist(), masked[2].tolist()))
            attn.masked_key_indices = None
        heads = []
        for h in range(keys_full.shape[0]):
            d = torch.cdist(keys[h].double(), keys_full[h].double())
            # The two prefills agree to float rounding (CPU kernels need not be bitwise equal),
            # far below the distance between two positions' keys.
            tol = 1e-5 * (1.0 + float(keys_full[h].abs().max()))
            if float(d.min(dim=1).values.max()) > tol:
                raise RuntimeError(f"layer {layer} head {h}: a kept key matches no prompt key")
            if d.shape[1] > 1 and float(d.topk(2, dim=1, largest=False).values[:, 1].min()) <= tol:
                raise RuntimeError(f"layer {layer} head {h}: two prompt keys are too close to tell apart")
            rows = d.argmin(dim=1).tolist()
            heads.append(sorted({pos for row, pos in enumerate(rows) if (h, row) not in dropped}))
        result.append(heads)
    return result
