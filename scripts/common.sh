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

# refuse_ambiguous_shots SCRIPT DATASET SHOTS: `base2new.sh DATASET 1` (2 or 3) without SEEDS reads like CoCoOp's
# `base2new_train.sh DATASET SEED`, but here it would train with 1 shot for seeds 1 2 3. Such a call is an error that
# shows both unambiguous forms; giving SEEDS (`base2new.sh eurosat 1 "1 2 3"`) runs it.
refuse_ambiguous_shots() {
  local script=$1 dataset=$2 shots=$3 name
  case "$shots" in
    1 | 2 | 3) ;;
    *) return 0 ;;
  esac
  name="scripts/$(basename "$(dirname "$script")")/$(basename "$script")"
  {
    echo "error: '$name $dataset $shots' is ambiguous: here the second argument is SHOTS (it would train with" \
      "$shots shot(s) per class for seeds 1 2 3), but CoCoOp's base2new_train.sh takes a SEED there. Say which:"
    echo "  $shots shot(s) per class, seeds 1 2 3:  bash $name $dataset $shots \"1 2 3\""
    echo "  16 shots, seed $shots only:             bash $name $dataset 16 $shots"
  } >&2
  exit 2
}

# protocol_sweep SCRIPT PROTOCOL TRAINER [POSITIONALS] [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
# The whole body of a method's <protocol>.sh: runs `python -m dasslite.sweep PROTOCOL` for TRAINER. POSITIONALS by
# protocol: base2new DATASET SHOTS; fewshot DATASET; xd and dg none (they train on imagenet, see --source). When one
# is missing, SCRIPT's "Usage:" block is printed. SEEDS (default "1 2 3", also "1,2") is the next argument that is
# not an option; base2new with SHOTS 1, 2 or 3 needs it (refuse_ambiguous_shots). Environment: CFG (default: the sweep's recipe for TRAINER and the dataset, dasslite.recipes.RECIPES;
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
  local seeds="1 2 3" seeds_given=""
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    seeds=$1
    seeds_given=1
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
  if [ "$protocol" = base2new ] && [ -z "$seeds_given" ]; then
    refuse_ambiguous_shots "$script" "${args[3]}" "${args[5]}"
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

# osr_sweep SCRIPT TRAINER DATASET [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]: the body of every <method>/osr.sh.
# A real dataset: `python -m dasslite.sweep osr` for TRAINER (an open-set benchmark: splits x seeds; a CoOp dataset:
# base classes known, new unknown, reusing the base2new training runs). demo: TRAINER and the demo's other trainers
# (dasslite.sweep.osr.DEMO_TRAINERS), one sweep each, then one table with all of them side by side.
# Environment: SHOTS (default 16; 4 on demo, the README's base2new demo runs), BALANCE (default none), CFG (not on
# demo: every trainer runs its demo recipe there), LOADEP, OUTPUT, and DATA / GPUS (read by the sweep).
osr_sweep() {
  local script=$1 trainer=$2
  shift 2
  if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
    print_usage "$script"
  fi
  local dataset=$1
  shift
  local seeds="1 2 3"
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    seeds=$1
    shift
  fi
  split_seeds "$seeds"
  local shots=${SHOTS:-16}
  if [ "$dataset" = demo ]; then
    shots=${SHOTS:-4}
  fi
  local output=${OUTPUT:-output}
  local args=(--dataset "$dataset" --shots "$shots" --seeds "${SEED_ARR[@]}" --output "$output"
    --balance "${BALANCE:-none}")
  if [ -n "${LOADEP:-}" ]; then
    args+=(--load-epoch "$LOADEP")
  fi
  if [ "$dataset" != demo ]; then
    if [ -n "${CFG:-}" ]; then
      args+=(--cfg "$CFG")
    fi
    exec "$PYTHON" -m dasslite.sweep osr --trainer "$trainer" "${args[@]}" "$@"
  fi
  local trainers=("$trainer") other
  for other in $("$PYTHON" -c 'from dasslite.sweep.osr import DEMO_TRAINERS; print(" ".join(DEMO_TRAINERS))'); do
    if [ "$other" != "$trainer" ]; then
      trainers+=("$other")
    fi
  done
  local dry_run=0 arg
  for arg in "$@"; do
    if [ "$arg" = --dry-run ]; then
      dry_run=1
    fi
  done
  for other in "${trainers[@]}"; do
    "$PYTHON" -m dasslite.sweep osr --trainer "$other" "${args[@]}" "$@"
  done
  if [ "$dry_run" -eq 0 ]; then
    echo
    exec "$PYTHON" -m dasslite.results osr "$output/osr" --dataset demo --shots "$shots" --trainer "${trainers[@]}" \
      --balance "${BALANCE:-none}"
  fi
}

# lineage_sweep PROTOCOL N KEY1 VALUE1 ... KEYn VALUEn [ARGS...] [-- KEY VALUE ...]: exec `python -m dasslite.sweep
# PROTOCOL ARGS...` with the n opts (the script's own, from its positionals) before the user's "-- KEY VALUE ...",
# so the user's extra opts win. Used by the lineage's own scripts (scripts/coop/main.sh, scripts/cocoop/*_*.sh).
lineage_sweep() {
  local protocol=$1 n=$2
  shift 2
  local fixed=() i
  for ((i = 0; i < 2 * n; i++)); do
    fixed+=("$1")
    shift
  done
  local before=() after=() seen=""
  while [ $# -gt 0 ]; do
    if [ -z "$seen" ] && [ "$1" = "--" ]; then
      seen=1
    elif [ -n "$seen" ]; then
      after+=("$1")
    else
      before+=("$1")
    fi
    shift
  done
  exec "$PYTHON" -m dasslite.sweep "$protocol" ${before[@]+"${before[@]}"} -- ${fixed[@]+"${fixed[@]}"} \
    ${after[@]+"${after[@]}"}
}

# lineage_common_args SEEDS [evaluates]: COMMON_ARGS, the sweep arguments every lineage script shares (seed, output
# root, CFG if set; with "evaluates", the checkpoint epoch LOADEP if set).
lineage_common_args() {
  split_seeds "$1"
  COMMON_ARGS=(--seeds "${SEED_ARR[@]}" --output "${OUTPUT:-output}")
  if [ -n "${CFG:-}" ]; then
    COMMON_ARGS+=(--cfg "$CFG")
  fi
  if [ "${2:-}" = evaluates ] && [ -n "${LOADEP:-}" ]; then
    COMMON_ARGS+=(--load-epoch "$LOADEP")
  fi
}
