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

# base2new_sweep SCRIPT TRAINER DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
# The whole body of a method's base2new.sh: prints SCRIPT's "Usage:" block (up to "Environment:") when DATASET or
# SHOTS is missing; otherwise runs `python -m dasslite.sweep base2new` for TRAINER. Environment: CFG (default: the
# sweep's recipe for TRAINER, demo on the demo dataset), LOADEP, OUTPUT (default: output); GPUS is read by the sweep.
base2new_sweep() {
  local script=$1 trainer=$2
  shift 2
  if [ $# -lt 2 ]; then
    awk '/^# Environment:/ {exit} /^# Usage:/ {on = 1} on {sub(/^# ?/, ""); print}' "$script" >&2
    exit 2
  fi
  local dataset=$1 shots=$2 seeds="1 2 3"
  shift 2
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    seeds=$1
    shift
  fi
  split_seeds "$seeds"
  local args=(--trainer "$trainer" --dataset "$dataset" --shots "$shots" --seeds "${SEED_ARR[@]}"
              --output "${OUTPUT:-output}")
  if [ -n "${CFG:-}" ]; then
    args+=(--cfg "$CFG")
  fi
  if [ -n "${LOADEP:-}" ]; then
    args+=(--load-epoch "$LOADEP")
  fi
  exec "$PYTHON" -m dasslite.sweep base2new "${args[@]}" "$@"
}
