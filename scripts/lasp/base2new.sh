#!/usr/bin/env bash
# LASP, base-to-new generalisation (CoCoOp's protocol): for each seed, train on the base classes (the text loss also
# sees the new class names, as virtual classes), evaluate on the new classes, then print the Base / New / H table.
# Finished runs are skipped, unfinished ones resume.
#
# Usage: bash scripts/lasp/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#   SHOTS    shots per base class (the papers use 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/LASP/ (default: the one the LASP authors ran for DATASET: ep50 for
#            caltech101/dtd/ucf101, ep300 for eurosat, ep10 batch 1 for food101 and imagenet, ep25 otherwise;
#            demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"

# LASP's authors train each dataset with its own recipe (their logs); CFG overrides.
case "${1:-}" in
  demo) DEFAULT_CFG=demo ;;
  caltech101|dtd|ucf101) DEFAULT_CFG=vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32 ;;
  eurosat) DEFAULT_CFG=vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32 ;;
  food101|imagenet) DEFAULT_CFG=vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b ;;
  *) DEFAULT_CFG=vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32 ;;
esac
if [ -n "${DEFAULT_CFG:-}" ]; then
  export CFG=${CFG:-$DEFAULT_CFG}
fi
base2new_sweep "$REPO_ROOT/scripts/lasp/base2new.sh" LASP "$@"
