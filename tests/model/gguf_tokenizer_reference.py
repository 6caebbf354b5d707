"""Independent references for kvpolicy's GGUF tokenizer (src/model/ggufTokenizer.ts).

bpe GGUF STRINGS_JSON OUT_JSON
    Reads the GGUF with gguf.GGUFReader, writes its tokenizer.* metadata (OUT["meta"], JSON
    values) and, for each pre-tokenizer variant, the ids that Hugging Face's Rust `tokenizers`
    gives for every string of STRINGS_JSON (OUT["ids"][variant]). The tokenizers are built here
    from the GGUF's vocabulary and merges, with the pre-tokenizers the original models ship in
    their tokenizer.json (e.g. SmolLM: Digits(individual_digits) then ByteLevel), the ByteLevel
    decoder, and control tokens as special AddedTokens. transformers' own GGUF conversion is not
    used: it differs from llama.cpp (no digit split, byte fallback).

spm VOCAB_JSON STRINGS_JSON OUT_JSON
    VOCAB_JSON: {"tokens", "scores", "types", "add_space_prefix", "add_bos", "bos"}. A direct
    re-implementation of llama.cpp's SentencePiece path (special-token partition, space prefix
    after a special token, ' ' -> U+2581, highest-score bigram merging with leftmost ties,
    <0xXX> byte fallback) writes OUT["ids"]["spm"].
"""

import heapq
import json
import sys

CONTROL, UNKNOWN, USER_DEFINED = 3, 2, 4


def bpe_reference(gguf_path, strings):
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models
    from tokenizers import pre_tokenizers as pt

    reader = gguf.GGUFReader(gguf_path)
    meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    # Regexes as the models' own tokenizer.json files write them (case-insensitive group).
    contractions = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
    tail = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

    def split(regex):
        return pt.Split(Regex(regex), behavior="isolated", invert=False)

    byte_level = pt.ByteLevel(add_prefix_space=False)  # with GPT-2's own regex
    raw_bytes = pt.ByteLevel(add_prefix_space=False, use_regex=False)
    variants = {
        "smollm": ([pt.Digits(individual_digits=True), byte_level], False),
        "gpt-2": ([byte_level], False),
        "llama-bpe": ([split(contractions + r"\p{N}{1,3}" + tail), raw_bytes], True),
        "qwen2": ([split(contractions + r"\p{N}" + tail), raw_bytes], False),
        "default": ([split(r"[\p{P}\$\+<=>\^~\|]+"), split(gpt2),
                     pt.Digits(individual_digits=False), split(r"[0-9][0-9][0-9]"), raw_bytes],
                    False),
    }
    ids = {}
    for name, (pres, ignore_merges) in variants.items():
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
        tok.pre_tokenizer = pt.Sequence(pres)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, ty in zip(tokens, types) if ty == CONTROL])
        ids[name] = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    return {"meta": meta, "ids": ids}


def spm_encode(text, vocab, scores, to_id):
    """llama.cpp's llm_tokenizer_spm_session.tokenize on one fragment."""
    chars = list(text)
    n = len(chars)
    sym = [[c, i - 1, i + 1 if i + 1 < n else -1] for i, c in enumerate(chars)]  # text, prev, next
    queue = []

    def push(left, right):
        if left == -1 or right == -1:
            return
        merged = sym[left][0] + sym[right][0]
        if merged in to_id:
            heapq.heappush(queue, (-scores[to_id[merged]], left, right, len(merged)))

    for i in range(1, n):
        push(i - 1, i)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not sym[left][0] or not sym[right][0] or len(sym[left][0]) + len(sym[right][0]) != size:
            continue
        sym[left][0] += sym[right][0]
        sym[right][0] = ""
        sym[left][2] = sym[right][2]
        if sym[right][2] != -1:
            sym[sym[right][2]][1] = left
        push(sym[left][1], left)
        push(left, sym[left][2])
    out, i = [], 0 if n else -1
    while i != -1:
        piece = sym[i][0]
        if piece in to_id:
            out.append(to_id[piece])
        else:
            out.extend(to_id["<0x%02X>" % b] for b in piece.encode("utf-8"))
        i = sym[i][2]
    return out


def spm_reference(spec, strings):
    tokens, scores, types = spec["tokens"], spec["scores"], spec["types"]
    to_id = {t: i for i, t in enumerate(tokens)}
    specials = sorted((i for i, ty in enumerate(types) if ty in (CONTROL, UNKNOWN, USER_DEFINED)),
                      key=lambda i: -len(tokens[i]))
    results = []
    for text in strings:
        fragments = [text]  # str = raw text, int = a special token's id
        for sid in specials:  # longest special first, over every raw fragment
            pieces = []
            for frag in fragments:
                if isinstance(frag, int):
                    pieces.append(frag)
                    continue
                parts = frag.split(tokens[sid])
                for k, part in enumerate(parts):
                    if k:
                        pieces.append(sid)
                    if part:
                        pieces.append(part)
            fragments = pieces
        out = [spec["bos"]] if spec["add_bos"] else []
        prev_special = True
        for frag in fragments:
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            raw = (" " if spec["add_space_prefix"] and prev_special else "") + frag
            out.extend(spm_encode(raw.replace(" ", "\u2581"), tokens, scores, to_id))
            prev_special = False
        results.append(out)
    return {"ids": {"spm": results}}


def main():
    mode, source, strings_path, out_path = sys.argv[1:5]
    with open(strings_path, encoding="utf-8") as f:
        strings = json.load(f)
    if mode == "bpe":
        result = bpe_reference(source, strings)
    else:
        with open(source, encoding="utf-8") as f:
            result = spm_reference(json.load(f), strings)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
