#!/usr/bin/env bash
# Packs .device-kit/: what scripts/device-bench.sh needs on a lent GPU machine, which has no Node, no npm and no
# network. Node's binary (compressed), the CLI bundle (dist/), the runtime packages (`npm ls --omit=dev`, with
# only this platform's Dawn addon) and the Vulkan loader's .deb from this machine's own apt sources.
# About 30 MB: the device tool carries at most 64 MiB of working tree, so nothing else goes in.
# Usage: bash scripts/device-kit.sh, then carry ".device-kit" in the device call (see docs/device.md).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.device-kit
rm -rf "$KIT"
mkdir -p "$KIT/pkg/node_modules" "$KIT/debs"

node scripts/build.mjs
cp -r dist package.json "$KIT/pkg/"

# runtime dependency closure; webgpu ships an addon per platform, and the device is linux-x64 like this machine
for dir in $(npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2); do
  rel=${dir#"$PWD"/}
  mkdir -p "$KIT/pkg/$(dirname "$rel")"
  cp -rL "$rel" "$KIT/pkg/$rel"
done
find "$KIT/pkg/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name "$(node -p 'process.platform + "-" + process.arch')" \
  -exec rm -rf {} +

# xz-compressed, Node's binary (99 MB -> 24) and the package (26 MB -> 8, most of it Dawn's addon); device-bench.sh
# unpacks them with Python's lzma when the machine has no xz
tar -C "$KIT" -cf - pkg | xz -T0 -6 >"$KIT/pkg.tar.xz"
rm -rf "$KIT/pkg"
xz -T0 -6 -c "$(command -v node)" >"$KIT/node.xz"

# the Vulkan loader (libvulkan.so.1), unpacked there only when the machine has none; apt-get download fetches
# from whatever sources this machine is configured with
(cd "$KIT/debs" && apt-get download libvulkan1 >/dev/null 2>&1) || echo "device-kit: could not download libvulkan1 (the device must have a Vulkan loader)" >&2

du -sh "$KIT"
