#!/usr/bin/env bash
# Packs what bench/gpu-run.sh needs on a device machine that reaches no network, into .dev/
# (git-ignored; the device tool carries it with `carry: [".dev"]`, 64 MiB at most):
#   .dev/deno.xz          this machine's Deno binary (xz -9)
#   .dev/denodir.tar.xz   the npm packages the CLI and the bench use (a DENO_DIR cache)
#   .dev/debs/*.deb       the Vulkan loader and GL/EGL libraries Deno's WebGPU opens
#   .dev/shared.tar.xz    ../shared's fixtures and golden outputs (the smoke test's references)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .dev && mkdir -p .dev/debs
xz -9 -T2 -c "$(readlink -f "$(command -v deno)")" > .dev/deno.xz
DENO_DIR=.dev/denodir deno cache --quiet src/cli/main.ts bench/*.ts tests/runtime/fixtures_test.ts
tar -cJf .dev/denodir.tar.xz -C .dev denodir && rm -rf .dev/denodir
(cd .dev/debs && apt-get download -q libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
  >/dev/null 2>&1) || echo "gpu-prepare: warning: apt-get download failed; the device needs libvulkan1"
tar -cJf .dev/shared.tar.xz -C .. shared/fixtures shared/golden
du -sh .dev .dev/*
