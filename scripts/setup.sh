#!/usr/bin/env bash
# Makes this machine ready to run t5-webgpu: npm dependencies, and a WebGPU adapter.
# A machine that already has an adapter (a GPU, or lavapipe) is left alone. Without one, on Debian/Ubuntu,
# Mesa's lavapipe Vulkan driver (Mesa >= 24; Dawn refuses older ones) is installed, on Debian 12 from the
# backports suite derived from the machine's own apt sources (no mirror is named here).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

if [ ! -d node_modules/webgpu ] || [ ! -d node_modules/vitest ]; then
  echo "setup: installing npm dependencies" >&2
  npm install --no-audit --no-fund >&2
fi

# Chromium for the web page's tests (tests/web-page.test.ts drives it headless; they are skipped without it).
# Best effort: a machine where it cannot be installed still runs everything else.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  CSUDO=""
  [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && CSUDO="sudo"
  if [ "$(id -u)" = 0 ] || [ -n "$CSUDO" ]; then
    echo "setup: installing Debian's chromium for the web page tests" >&2
    { $CSUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $CSUDO apt-get install -y -qq --no-install-recommends chromium; } >&2 \
      || echo "setup: chromium could not be installed; tests/web-page.test.ts will be skipped" >&2
  fi
fi

if node scripts/probe-adapter.mjs >&2; then exit 0; fi

fail() {
  cat >&2 <<MSG
setup: no WebGPU adapter could be found.
  tried: $1
  fix:   install a Vulkan driver with Mesa 24 or newer (Debian/Ubuntu package mesa-vulkan-drivers;
         on Debian 12 from bookworm-backports), or run on a machine with a GPU and its Vulkan driver.
MSG
  exit 1
}

command -v apt-get >/dev/null || fail "no apt-get on this machine, so lavapipe could not be installed automatically"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || fail "not root and no sudo, so lavapipe could not be installed"
  SUDO="sudo"
fi

# shellcheck disable=SC1091
. /etc/os-release
codename="${VERSION_CODENAME:-}"

mesa_major() { # candidate major version of mesa-vulkan-drivers, from the given apt-cache policy output
  sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9]*\)\..*/\2/p' | head -n1
}

echo "setup: no WebGPU adapter; installing Mesa's lavapipe Vulkan driver" >&2
$SUDO apt-get update -qq >&2
major="$(apt-cache policy mesa-vulkan-drivers | mesa_major)"
target=()
if [ "${ID:-}" = debian ] && [ -n "$codename" ] && [ "${major:-0}" -lt 24 ]; then
  # Derive the backports entry from the machine's own Debian source (same URIs, keyring, components).
  list=/etc/apt/sources.list.d/t5-webgpu-backports.sources
  if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src="$(grep -lsE "^Suites:.*\b${codename}\b" /etc/apt/sources.list.d/*.sources | head -n1 || true)"
    if [ -n "$src" ]; then
      awk -v suite="${codename}-backports" '
        BEGIN { RS=""; FS="\n" }
        /(^|\n)Suites:[^\n]*[ \t]'"${codename}"'([ \t]|$)/ && !done {
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^Suites:/) print "Suites: " suite; else if ($i !~ /^#/) print $i
          }
          done = 1
        }' "$src" | $SUDO tee "$list" >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
      line="$(grep -E "^deb [^ ]+ ${codename} " /etc/apt/sources.list | head -n1 || true)"
      [ -n "$line" ] || fail "Mesa ${major:-?} is too old and no Debian source line to derive backports from"
      echo "$line" | awk -v s="${codename}-backports" '{ $3 = s; print }' | $SUDO tee "/etc/apt/sources.list.d/t5-webgpu-backports.list" >/dev/null
    else
      fail "Mesa ${major:-?} is too old and no apt source to derive ${codename}-backports from"
    fi
  fi
  $SUDO apt-get update -qq >&2
  target=(-t "${codename}-backports")
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${target[@]}" mesa-vulkan-drivers libvulkan1 >&2 \
  || fail "apt-get install ${target[*]} mesa-vulkan-drivers"

node scripts/probe-adapter.mjs >&2 || fail "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null), still no adapter"
