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
# (pip -q still prints one warning per missing local index folder on some machines: filter just those)
pip_install() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; }
pip_install -r requirements-lock.txt
pip_install --no-deps -e .
"$VENV/bin/python" -c "from dasslite.clip._import import import_clip; import_clip(); print('install ok: dasslite + CLIP import')"
