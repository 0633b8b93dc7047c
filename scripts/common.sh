# Sourced by scripts/<method>/*.sh. Moves to the repository root (so the scripts work from any folder) and sets
# PYTHON: $PYTHON if given, else `python` on PATH (an activated venv), else ./.venv/bin/python, else python3.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
if [ -z "${PYTHON:-}" ]; then
  if command -v python >/dev/null 2>&1; then
    PYTHON=python
  elif [ -x .venv/bin/python ]; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi

# split_seeds "1 2 3" | "1,2,3" -> the array SEED_ARR
split_seeds() {
  read -r -a SEED_ARR <<< "${1//,/ }"
  if [ "${#SEED_ARR[@]}" -eq 0 ]; then
    echo "error: no seeds given" >&2
    exit 2
  fi
}
