# Sourced by scripts/<method>/*.sh. Moves to the repository root (so the scripts work from any folder) and sets
# PYTHON: $PYTHON if given, else the first of `python` (an activated venv), ./.venv/bin/python, python3 that has torch.
# A relative DATA or OUTPUT is taken relative to the folder the script was started from (made absolute before the
# move); paths given as SWEEP OPTIONS (--data, --output, --config-file) are read from the repository root.
# Works with bash 3.2 (macOS) too: no empty "${array[@]}" under `set -u`.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$PWD"

# from_caller PATH: PATH if absolute, else PATH under the folder the script was started from
from_caller() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$CALLER_DIR/$1" ;;
  esac
}
if [ -n "${DATA:-}" ]; then
  DATA="$(from_caller "$DATA")"
  export DATA
fi
if [ -n "${OUTPUT:-}" ]; then
  OUTPUT="$(from_caller "$OUTPUT")"
fi
cd "$REPO_ROOT"
if [ -z "${PYTHON:-}" ]; then
  # the first interpreter that has the dependencies: a `python` without torch (no venv active) is skipped
  for candidate in python .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch, yacs" >/dev/null 2>&1; then
      PYTHON="$candidate"
      break
    fi
  done
  if [ -z "${PYTHON:-}" ]; then
    echo "error: no Python with torch and yacs found (tried python, .venv/bin/python, python3). Install the" \
         "environment with 'bash scripts/install.sh' and activate it ('. .venv/bin/activate'), or set PYTHON=..." >&2
    exit 2
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

# print_usage SCRIPT: SCRIPT's header comment from "# Usage:" up to "# Environment:", to stderr; exit status 2.
print_usage() {
  awk '/^# Environment:/ {exit} /^# Usage:/ {on = 1} on {sub(/^# ?/, ""); print}' "$1" >&2
  exit 2
}

# protocol_sweep SCRIPT PROTOCOL TRAINER [POSITIONALS] [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
# The whole body of a method's <protocol>.sh: runs `python -m dasslite.sweep PROTOCOL` for TRAINER. POSITIONALS by
# protocol: base2new DATASET SHOTS; fewshot DATASET; xd and dg none (they train on imagenet, see --source). When one
# is missing, SCRIPT's "Usage:" block is printed. SEEDS (default "1 2 3", also "1,2") is the next argument that is
# not an option. Environment: CFG (default: the sweep's recipe for TRAINER and the dataset, dasslite.sweep.RECIPES;
# demo on the demo dataset), LOADEP (not fewshot), OUTPUT (default: output in the repository root; a relative one is
# under the caller's folder); DATA (relative: under the caller's folder) and GPUS are read by the sweep.
protocol_sweep() {
  local script=$1 protocol=$2 trainer=$3
  shift 3
  local flags=()
  case "$protocol" in
    base2new) flags=(--dataset --shots) ;;
    fewshot) flags=(--dataset) ;;
    xd | dg) flags=() ;;
    *)
      echo "error: unknown protocol '$protocol' (base2new, fewshot, xd, dg)" >&2
      exit 2
      ;;
  esac
  local args=(--trainer "$trainer") flag
  for flag in ${flags[@]+"${flags[@]}"}; do
    if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
      print_usage "$script"
    fi
    args+=("$flag" "$1")
    shift
  done
  local seeds="1 2 3"
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    seeds=$1
    shift
    if [ "${#flags[@]}" -eq 0 ] && [[ ! "$seeds" =~ ^[0-9,\ ]+$ ]]; then
      echo "error: $(basename "$script") takes no DATASET (got '$seeds'): $protocol trains on the source dataset" \
        "(--source, default imagenet) and evaluates on the targets (--targets)." >&2
      if [ "$seeds" = demo ]; then
        echo "The demo world is a single dataset, so there is nothing to transfer to: run base2new.sh or" \
          "fewshot.sh on demo instead." >&2
      fi
      print_usage "$script"
    fi
  fi
  split_seeds "$seeds"
  args+=(--seeds "${SEED_ARR[@]}" --output "${OUTPUT:-output}")
  if [ -n "${CFG:-}" ]; then
    args+=(--cfg "$CFG")
  fi
  if [ -n "${LOADEP:-}" ] && [ "$protocol" != fewshot ]; then
    args+=(--load-epoch "$LOADEP")
  fi
  exec "$PYTHON" -m dasslite.sweep "$protocol" "${args[@]}" "$@"
}

# base2new_sweep SCRIPT TRAINER DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]: protocol_sweep for base2new.
base2new_sweep() {
  local script=$1 trainer=$2
  shift 2
  protocol_sweep "$script" base2new "$trainer" "$@"
}
