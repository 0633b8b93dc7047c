#!/usr/bin/env bash
# Zero-shot CLIP on the base-to-new split: evaluation only, on the base classes (into train_base/) and on the new
# classes (into test_new/), then the Base / New / H table. Finished runs are skipped.
#
# Usage: bash scripts/zsclip/base2new.sh DATASET [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#            or all (the 11 datasets of the papers' tables) or a list (eurosat,dtd or "eurosat dtd"): one plan, one pool
#   SEEDS    default "1 2 3" (zero-shot CLIP is deterministic; the seeds keep the layout of the trained methods)
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run
# Environment:
#   TRAINER  ZeroshotCLIP (default; the dataset's template) or ZeroshotCLIP2 (template ensemble)
#   CFG      recipe in configs/trainers/ZeroshotCLIP/ (default: vit_b16; demo for the demo dataset)
#   SHOTS    only names the folder shots_<SHOTS> next to the trained methods' runs (default: 16)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"

if [ $# -lt 1 ]; then
  sed -n '5,9p' "$REPO_ROOT/scripts/zsclip/base2new.sh" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
DATASET=$1
shift
SEEDS="1 2 3"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  SEEDS=$1
  shift
fi
split_seeds "$SEEDS"

if [ "$DATASET" = demo ]; then
  CFG=${CFG:-demo}
else
  CFG=${CFG:-vit_b16}
fi
exec "$PYTHON" -m dasslite.sweep base2new --trainer "${TRAINER:-ZeroshotCLIP}" --zero-shot --dataset "$DATASET" \
  --cfg "$CFG" --shots "${SHOTS:-16}" --seeds "${SEED_ARR[@]}" --output "${OUTPUT:-output}" "$@"
