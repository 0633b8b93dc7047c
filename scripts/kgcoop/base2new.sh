#!/usr/bin/env bash
# KgCoOp, base-to-new generalisation (CoCoOp's protocol): for each seed, train on the base classes (CoOp's context
# plus the knowledge-guided loss towards the dataset's hand-crafted prompt), evaluate on the new classes, then print
# the Base / New / H table. Finished runs are skipped, unfinished ones resume.
#
# Usage: bash scripts/kgcoop/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#            or all (the 11 datasets of the papers' tables) or a list (eurosat,dtd or "eurosat dtd"): one plan, one pool
#   SHOTS    shots per base class (the paper uses 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/KgCoOp/ (default: vit_b16_ep100_ctxv1, the authors' setting, W 8.0;
#            demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
# Another loss weight: `-- TRAINER.KGCOOP.W 2.0` with its own OUTPUT (the authors' scripts put W in the folder name;
# extra opts do not change folder names here, so a finished run with another W would be skipped).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
base2new_sweep "$REPO_ROOT/scripts/kgcoop/base2new.sh" KgCoOp "$@"
