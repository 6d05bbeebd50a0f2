#!/usr/bin/env bash
# Our t5-small rows against PyTorch's in one period, as issue 10 asks for: PyTorch, then ours
# (`engine-cli bench --json t5 generate`), then PyTorch again, and a table of ours / PyTorch against both.
#
#   bash bench/peers/compare-t5.sh              # 5-10 minutes on 2 cores
#   OUT=./p1 bash bench/peers/compare-t5.sh    # keep the JSON lines in ./p1.{torch1,ours,torch2}.jsonl
#
# Needs Debian's python3-torch (bash bench/peers/run-torch-peers.sh --tiny installs it) and a built CLI
# (npm run build). PyTorch decodes from 128 source tokens, like our generate rows. Autotune is off unless
# T5_WEBGPU_AUTOTUNE is set, so our rows use the fixed kernel choices.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
out="${OUT:-$(mktemp -d)/compare}"

if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "PyTorch is missing for $PY: run  bash bench/peers/run-torch-peers.sh --tiny  (it installs it)" >&2
  exit 1
fi
if [[ ! -f "$root/dist/engine-cli.js" ]]; then
  echo "no dist/engine-cli.js: run  npm run build  first" >&2
  exit 1
fi

export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="${THREADS:-2}" OPENBLAS_NUM_THREADS="${THREADS:-2}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" T5_WEBGPU_AUTOTUNE="${T5_WEBGPU_AUTOTUNE:-0}"
torch_rows() {
  "$PY" "$here/torch_t5.py" --threads "${THREADS:-2}" --rows forward,train,greedy,beam --dec-src 128 >"$1"
}

echo "# $(date -u +%H:%M:%S) PyTorch" >&2
torch_rows "$out.torch1.jsonl"
echo "# $(date -u +%H:%M:%S) ours" >&2
node "$root/dist/engine-cli.js" bench --json t5 generate >"$out.ours.jsonl"
echo "# $(date -u +%H:%M:%S) PyTorch again" >&2
torch_rows "$out.torch2.jsonl"
"$PY" "$here/compare_t5.py" "$out.torch1.jsonl" "$out.ours.jsonl" "$out.torch2.jsonl"
