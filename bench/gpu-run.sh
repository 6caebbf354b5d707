#!/usr/bin/env bash
# The whole GPU measurement in one call (issue: on a real GPU, compression must buy speed), for a
# device machine with no network, after bench/gpu-prepare.sh packed .dev/ here:
#   run: `bash bench/gpu-run.sh` with carry [".dev"]; results in $OUT (default out/gpu):
#   smoke.txt, profile.json, bench.json, bench-long.json, torch.json, RESULTS-gpu.md (the
#   section for bench/RESULTS.md), log.txt. At most 7 minutes (the timeouts below add up to 420 s):
#   a part that runs out of time leaves its file empty and the report says which rows are missing.
# GPU_SHAPE (default 1b), GPU_LENGTHS (1k,16k) and GPU_LONG (32k) shrink it for a dry run on
# llvmpipe: GPU_SHAPE=small GPU_LENGTHS=1k GPU_LONG=2k bash bench/gpu-run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
SHAPE="${GPU_SHAPE:-1b}"
LENGTHS="${GPU_LENGTHS:-1k,16k}"
LONG="${GPU_LONG:-32k}"
PROFILE_LENGTHS="${GPU_PROFILE_LENGTHS:-1k}"
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }

# Tools: Deno, its npm cache, the Vulkan loader, ../shared (each only when missing).
if ! command -v deno >/dev/null 2>&1; then
  mkdir -p /tmp/bin && xz -dc .dev/deno.xz > /tmp/bin/deno && chmod +x /tmp/bin/deno
  export PATH="/tmp/bin:$PATH"
fi
if [ -f .dev/denodir.tar.xz ]; then
  export DENO_DIR="${DENO_DIR:-/tmp/denodir}"
  mkdir -p "$DENO_DIR" && tar -xJf .dev/denodir.tar.xz -C "$DENO_DIR" --strip-components=1
fi
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  for deb in .dev/debs/*.deb; do [ -f "$deb" ] && dpkg -x "$deb" /; done
  ldconfig 2>/dev/null || true
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" && break
done
[ -d ../shared ] || { [ -f .dev/shared.tar.xz ] && tar -xJf .dev/shared.tar.xz -C ..; }
export XDG_RUNTIME_DIR=/tmp NO_COLOR=1
log "deno $(deno --version | head -1); VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}; shape $SHAPE"

# 1. Correctness on this adapter: the fixtures' golden logits and greedy decode.
timeout 45 deno test -A tests/runtime/fixtures_test.ts > "$OUT/smoke.txt" 2>&1
log "smoke: exit $? — $(grep -E 'passed|failed' "$OUT/smoke.txt" | tail -1)"

POLICIES=(--policy 'else -> full' --policy 'else -> window(sink=4, recent=1020)'
  --policy 'else -> snap(k=1024)')
# 2. What a decode step costs (dispatches, CPU encode, GPU, wall).
timeout 60 deno task bench --profile --json --shape "$SHAPE" --lengths "$PROFILE_LENGTHS" "${POLICIES[@]}" \
  > "$OUT/profile.json" 2>> "$OUT/log.txt"
log "profile: exit $?"
# 3. Decode speed, full vs window vs snap; the long prompt separately, so a timeout keeps the rest.
timeout 150 deno task bench --json --shape "$SHAPE" --lengths "$LENGTHS" --repeats 1 "${POLICIES[@]}" \
  > "$OUT/bench.json" 2>> "$OUT/log.txt"
log "bench: exit $?"
timeout 120 deno task bench --json --shape "$SHAPE" --lengths "$LONG" --repeats 1 "${POLICIES[@]}" \
  > "$OUT/bench-long.json" 2>> "$OUT/log.txt"
log "bench ($LONG): exit $?"
# 4. The PyTorch peer on the same shape and prompts (if this machine has torch and transformers).
DIMS=$(deno eval "import {BENCH_SHAPES} from './bench/randomModel.ts'; console.log(JSON.stringify(BENCH_SHAPES['$SHAPE']))")
TOKENS=$(deno eval "import {parseLengths} from './src/eval/gridSpec.ts'; console.log(parseLengths('$LENGTHS').join(','))")
timeout 45 python3 bench/torch_peer.py --shape "$DIMS" --lengths "$TOKENS" > "$OUT/torch.json" \
  2>> "$OUT/log.txt"
log "torch peer: exit $?"
# 5. The table for bench/RESULTS.md.
deno run --allow-read bench/gpuReport.ts "$OUT/profile.json" "$OUT/bench.json" "$OUT/bench-long.json" \
  "$OUT/torch.json" "$SHAPE" > "$OUT/RESULTS-gpu.md" 2>> "$OUT/log.txt"
log "report: exit $?"
cat "$OUT/RESULTS-gpu.md"
