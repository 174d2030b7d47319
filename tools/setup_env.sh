#!/usr/bin/env bash
# Install the pinned stack into the current Python (idempotent; fast when done).
# torch: kept if already importable (e.g. a user's CUDA build), else torch==2.13.0.
# mmcv 2.1.0 with compiled ops: from a wheel in $MMCV_WHEELHOUSE (default
# ../shared/wheelhouse) when present, else built from the PyPI source (~16 min).
# Nothing installed is downgraded: every pip call runs under constraints
# `name>=installed version` (tools/pip_constraints.py; only setuptools >= 82,
# which lacks pkg_resources, is replaced by setuptools<82), and openmim is
# installed without its dependency opendatalab -> openxlab, which pins old
# setuptools, requests, urllib3, rich, tqdm and filelock (only
# `mim download --dataset` needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# the wheelhouse sits beside the checkout (../shared); a clone elsewhere
# (e.g. /tmp) falls back to the canonical /work/shared location
WHEELHOUSE=${MMCV_WHEELHOUSE:-../shared/wheelhouse}
[ -d "$WHEELHOUSE" ] || WHEELHOUSE=/work/shared/wheelhouse

REPO=$(pwd -P)

check() {
  # run outside the repo so that mmdet_odam must come from the installed
  # (editable) package, and that package must be this checkout
  (cd / && REPO="$REPO" "$PY" - <<'PY' 2>/dev/null)
import importlib.metadata as md
import torch, mmengine, mmcv, mmdet, pycocotools, pytest, tqdm, mim  # noqa
import websocket, nbclient, nbformat, ipykernel  # noqa: report / notebook tests
from mmcv.ops import nms  # noqa: compiled ops present
import pkg_resources  # noqa: needed by mmengine for mmdet:: bases
assert mmengine.__version__ == '0.10.7' and mmcv.__version__ == '2.1.0'
assert mmdet.__version__ == '3.3.0'
assert md.distribution('mmdet-odam') is not None
import os, mmdet_odam  # noqa
assert os.path.realpath(mmdet_odam.__file__).startswith(os.environ['REPO'] + os.sep)
PY
}

if check; then
  exit 0
fi
echo "[setup] installing the pinned stack into $("$PY" -c 'import sys; print(sys.prefix)')"
# torch pulls setuptools>=77 and would upgrade it past 81, removing the
# pkg_resources that mmcv's setup.py and mmengine's mmdet:: bases need; and no
# installed package may go down a version: every install runs under these.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo 'setuptools<82' > "$CONSTRAINTS"
"$PY" tools/pip_constraints.py mmengine==0.10.7 mmcv==2.1.0 mmdet==3.3.0 \
  >> "$CONSTRAINTS"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
pip_install() {
  "${PIP[@]}" "$@" || {
    echo "[setup] pip failed (above); if it could not install without" \
      "downgrading an installed package, use a fresh virtual environment:" \
      "PYTHON=/path/to/venv/bin/python make ..." >&2
    exit 1
  }
}
pip_install 'setuptools<82' wheel packaging
if ! "$PY" -c 'import torch' 2>/dev/null; then
  pip_install torch==2.13.0
fi
pip_install mmengine==0.10.7
if ! "$PY" -c 'import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != "2.1.0")' 2>/dev/null; then
  "$PY" -m pip uninstall -y mmcv mmcv-lite >/dev/null 2>&1 || true
  tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
  wheel=$(ls "$WHEELHOUSE"/mmcv-2.1.0-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then
    echo "[setup] mmcv from wheel $wheel"
    pip_install "$wheel"
  else
    echo "[setup] no mmcv wheel in $WHEELHOUSE: building mmcv 2.1.0 from source (~16 min)"
    MMCV_WITH_OPS=1 pip_install --no-build-isolation mmcv==2.1.0
  fi
fi
pip_install mmdet==3.3.0 pycocotools numpy pytest tqdm
# tests: the HTML report in Chromium (DevTools protocol), the tutorial notebook
pip_install websocket-client nbclient nbformat ipykernel
# mim without opendatalab/openxlab: the dependencies its commands import
# (pip then notes that openmim's opendatalab is missing: expected)
pip_install --no-deps openmim
pip_install click colorama model-index pandas requests rich tabulate
pip_install --no-build-isolation --no-deps -e .
check || { echo "[setup] environment check failed after install" >&2; exit 1; }
echo "[setup] done"
