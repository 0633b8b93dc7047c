#!/usr/bin/env bash
# Create ./.venv (or $VENV) and install this repo with the pinned dependency set. Offline-safe: only the
# package registries are used; no model weights or datasets are downloaded here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q -r requirements-lock.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" -c "from dasslite.clip._import import import_clip; import_clip(); print('install ok: dasslite + CLIP import')"
