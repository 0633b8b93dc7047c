#!/usr/bin/env bash
# CoCoOp, base-to-new generalisation (its own protocol): for each seed, train on the base classes, evaluate on the
# new classes, then print the Base / New / H table. Finished runs are skipped, unfinished ones resume.
#
# Usage: bash scripts/cocoop/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#            or all (the 11 datasets of the papers' tables) or a list (eurosat,dtd or "eurosat dtd"): one plan, one pool
#   SHOTS    shots per base class (the paper uses 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/CoCoOp/ (default: vit_b16_c4_ep10_batch1_ctxv1, the authors' base-to-new
#            setting; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
# Memory: TRAINER.COCOOP.TEXT_CHUNK_SIZE (after --) bounds how many prompts are encoded at once.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
base2new_sweep "$REPO_ROOT/scripts/cocoop/base2new.sh" CoCoOp "$@"
