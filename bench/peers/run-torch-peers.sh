#!/usr/bin/env bash
# PyTorch CPU peer figures for bench/peers/README.md: matmul/softmax rows, then the t5-small rows.
# One JSON line per measurement on stdout; progress and warnings on stderr.
#
#   bash bench/peers/run-torch-peers.sh            # everything (a few minutes on 2 cores)
#   bash bench/peers/run-torch-peers.sh --tiny     # quick check: tiny T5 config and one small matmul
#   THREADS=4 bash bench/peers/run-torch-peers.sh  # another thread count (default 2, this machine's cores)
#
# Uses Debian's python3-torch (1.13) with OpenBLAS, installed with apt when missing (needs root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-/usr/bin/python3}"  # the apt torch installs for Debian's python, not a pyenv one on PATH
THREADS="${THREADS:-2}"
PKGS=(python3-torch libopenblas0-pthread)

tiny=0
for arg in "$@"; do
  case "$arg" in
    --tiny) tiny=1 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them as root:  sudo apt-get install -y ${PKGS[*]}" >&2
    echo "(libopenblas0-pthread matters: without it torch uses the reference BLAS, about 50x slower)" >&2
    exit 1
  fi
  echo "# installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y "${PKGS[@]}" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y "${PKGS[@]}" >/dev/null
  fi
fi

# Before torch loads: passive OpenMP waits (libgomp's spinning idle threads otherwise take the cores from
# OpenBLAS: every t5-small figure came out about 2x slower), and both thread pools at $THREADS.
export OMP_WAIT_POLICY=PASSIVE
export OMP_NUM_THREADS="$THREADS"
export OPENBLAS_NUM_THREADS="$THREADS"

model="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) cpu: ${model:-unknown}, $(nproc) cores, load average: $load" >&2

if ((tiny)); then
  "$PY" "$here/torch_matmul.py" --threads "$THREADS" --matmul 256x256x256 --min-time 0.2
  "$PY" "$here/torch_t5.py" --threads "$THREADS" --config tiny
else
  "$PY" "$here/torch_matmul.py" --threads "$THREADS"
  "$PY" "$here/torch_t5.py" --threads "$THREADS" --config t5-small
fi
