#!/usr/bin/env bash
# Set up rtdetr_zoo on a bare Python 3.11 machine (CPU), idempotently.
#
#   bash tools/setup_env.sh
#
# Installs the pinned, verified stack into the active Python interpreter:
# torch 2.12.1 + torchvision 0.27.1, mmengine 0.10.7, mmcv 2.1.0 built from
# source with ops, mmdet 3.3.0, mmpretrain 1.2.0, openmim 0.3.9, tensorboard,
# and this project in editable mode; then the git-ignored virtual environment
# .venvs/transformers5 (this interpreter's packages plus transformers 5, for
# tests/test_packaging.py). A second run only checks versions (seconds); the
# compiled mmcv wheel is reused from pip's wheel cache on a re-install.
set -euo pipefail

PYTHON=${PYTHON:-python}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP=("$PYTHON" -m pip install --disable-pip-version-check)

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# installed_version DIST [PYTHON]: the version of DIST installed for PYTHON
# (default: $PYTHON), or nothing.
installed_version() {
  "${2:-$PYTHON}" - "$1" <<'PY' 2>/dev/null || true
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

# ensure DIST VERSION [pip args...]: install DIST==VERSION unless present.
ensure() {
  local dist=$1 want=$2; shift 2
  local have; have=$(installed_version "$dist")
  if [ "${have%%+*}" = "$want" ]; then
    log "$dist $have already installed"
  else
    log "installing $dist==$want (found: ${have:-none})"
    "${PIP[@]}" "$@" "$dist==$want"
  fi
}

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "error: Python 3.11 is required (PYTHON=$PYTHON)"; exit 1; }

# A machine-wide pip constraint may cap torch; the pins below are exact anyway.
ensure setuptools 80.9.0
ensure wheel 0.45.1
ensure torch 2.12.1
ensure torchvision 0.27.1 "torch==2.12.1"
ensure mmengine 0.10.7
# mmcv: compiled ops against the installed torch (about 11 minutes on 2
# cores the first time; pip's wheel cache makes later installs quick).
if [ "$(installed_version mmcv)" = "2.1.0" ] && "$PYTHON" -c 'import mmcv.ops' 2>/dev/null; then
  log "mmcv 2.1.0 (with ops) already installed"
else
  log "building mmcv==2.1.0 with ops (first time: ~11 min on 2 cores)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" --no-build-isolation "mmcv==2.1.0"
fi
ensure mmdet 3.3.0
ensure mmpretrain 1.2.0
# openmim's only heavy dependency, opendatalab (dataset downloads), pins
# setuptools 60 and old requests, which breaks editable installs: skip it.
if [ "$(installed_version openmim)" != "0.3.9" ]; then
  log "installing openmim==0.3.9 (without opendatalab)"
  "${PIP[@]}" --no-deps "openmim==0.3.9"
  "${PIP[@]}" click colorama model-index pandas rich tabulate requests
else
  log "openmim 0.3.9 already installed"
fi
# timm: reference MobileNetV4 for the equivalence tests (and the source of its
# ImageNet weights' key layout).
ensure timm 1.0.31
ensure pytest 9.0.3
ensure psutil 7.2.2
# ONNX export and ONNX Runtime inference (tools/deploy/export_onnx.py).
ensure onnx 1.23.2
ensure onnxruntime 1.32.0
ensure onnxsim 0.8.1
# TensorBoard for mmengine's TensorboardVisBackend (visualizer.vis_backends).
ensure tensorboard 2.21.0
# Re-assert the setuptools pin in case a dependency moved it.
ensure setuptools 80.9.0

# This project, editable, pointing at this checkout.
here=$("$PYTHON" -c 'import rtdetr_zoo, os; print(os.path.realpath(rtdetr_zoo.__file__))' 2>/dev/null || true)
if [ "$here" = "$(realpath "$REPO_ROOT/projects/rtdetr_zoo/__init__.py")" ]; then
  log "rtdetr_zoo already installed (editable) from $REPO_ROOT"
else
  log "installing rtdetr_zoo (editable) from $REPO_ROOT"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$REPO_ROOT"
fi

# transformers 5 (which many users have) breaks mmpretrain 1.2's multimodal
# models, imported by mmdet; tests/test_packaging.py imports and trains in
# this environment. 5.24.0: 5.25.0 needs kernels>=0.19.1, not on the index yet.
TF5_VENV="$REPO_ROOT/.venvs/transformers5"
TF5_VERSION=5.24.0
if [ -x "$TF5_VENV/bin/python" ] \
    && [ "$(installed_version transformers "$TF5_VENV/bin/python")" = "$TF5_VERSION" ]; then
  log "transformers $TF5_VERSION already installed in $TF5_VENV"
else
  log "creating $TF5_VENV (system site-packages + transformers==$TF5_VERSION)"
  "$PYTHON" -m venv --system-site-packages "$TF5_VENV"
  "$TF5_VENV/bin/python" -m pip install --disable-pip-version-check "transformers==$TF5_VERSION"
fi

"$PYTHON" - <<'PY'
import torch, torchvision, mmengine, mmcv, mmdet, mmpretrain
import mmcv.ops  # noqa: F401  (fails if mmcv was built without ops)
import rtdetr_zoo  # noqa: F401  (registers the modules)
print(f'[setup] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmpretrain {mmpretrain.__version__}')
PY
