#!/usr/bin/env bash
# Runs on a lent GPU machine (issue 10, item 6): `engine-cli info` and `bench matmul`, `bench t5` (t5-small and
# t5-base) and `bench generate` on its Vulkan adapter, from the kit that scripts/device-kit.sh packed here.
# Everything lands in $OUT (the device tool brings back at most 8 files): info.json, matmul.jsonl, t5.jsonl,
# generate.jsonl, gpu.txt and device-bench.log. QUICK=1 runs small sizes only (to check the kit on any machine).
# Each bench has its own time limit, so one that hangs costs its slot, not the lease.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=.device-kit
OUT=${OUT:-device-out}
mkdir -p "$OUT"
LOG="$OUT/device-bench.log"
exec > >(tee "$LOG") 2>&1
[ -f "$KIT/node.xz" ] || { echo "device-bench: no $KIT here: run scripts/device-kit.sh and carry .device-kit"; exit 2; }

WORK=${TMPDIR:-/tmp}/t5-webgpu-device
mkdir -p "$WORK/bin" "$WORK/cache"
unxz() { # file.xz -> stdout
  if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}
unxz "$KIT/node.xz" >"$WORK/bin/node"
rm -rf "$WORK/pkg"
unxz "$KIT/pkg.tar.xz" | tar -C "$WORK" -xf -
chmod +x "$WORK/bin/node"
NODE="$WORK/bin/node"
"$NODE" --version >/dev/null 2>&1 || { echo "device-bench: the carried Node does not run here"; exit 2; }
[ -f "$WORK/pkg/dist/engine-cli.js" ] || { echo "device-bench: the carried package did not unpack"; exit 2; }

# Dawn opens libvulkan.so.1: unpack the carried loader beside, not over, the system when there is none
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  for f in "$KIT"/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" "$WORK/root"; done
  export LD_LIBRARY_PATH="$WORK/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# the lent NVIDIA machines keep their Vulkan driver's manifest under /usr/local/nvidia
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$NV_ICD" ]; then export VK_DRIVER_FILES="$NV_ICD"; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$WORK}
export T5_WEBGPU_CACHE_DIR="$WORK/cache"
export T5_WEBGPU_BACKEND=${T5_WEBGPU_BACKEND:-vulkan}

CLI=("$NODE" "$WORK/pkg/dist/engine-cli.js")
echo "device-bench: node $("$NODE" --version), $(uname -m), $(date -u +%FT%TZ)"
{ nvidia-smi -q 2>/dev/null | head -60 || true; } >"$OUT/gpu.txt"

step() { # name limit_s args...
  local name=$1 limit=$2
  shift 2
  echo "== $name: engine-cli $* (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "${CLI[@]}" "$@" >"$OUT/$name"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  cat "$OUT/$name"
}

step info.json 60 info --json --remeasure
if [ "${QUICK:-0}" = 1 ]; then
  step matmul.jsonl 300 bench matmul --sizes 64x64x64,128x96x80 --repeat 1 --json
  step t5.jsonl 300 bench t5 --sizes tiny --repeat 1 --json
  step generate.jsonl 300 bench generate --sizes tiny --repeat 1 --json
else
  step matmul.jsonl 120 bench matmul --repeat 5 --json
  step t5.jsonl 180 bench t5 --sizes t5-small,base,base+ckpt --repeat 3 --json
  step generate.jsonl 150 bench generate --repeat 3 --json
fi
echo "device-bench: done $(date -u +%FT%TZ)"
