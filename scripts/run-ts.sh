#!/usr/bin/env bash
# Runs a TypeScript file with Node 20 (no type stripping there): bundles it with esbuild into .cache/run/
# inside the repo, so `webgpu` and other packages resolve from node_modules, then runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$1"; shift
out="$root/.cache/run/$(basename "${src%.ts}")-$$.mjs"
mkdir -p "$root/.cache/run"
"$root/node_modules/.bin/esbuild" "$src" --bundle --platform=node --format=esm --target=node20 \
  --packages=external --log-level=warning --outfile="$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
trap 'rm -f "$out"' EXIT
node "$out" "$@"
