#!/usr/bin/env bash
# pMoE-style (frozen ViT experts with dispatched deep prompts, CLIP joint-space head), base-to-new generalisation:
# for each seed, train on the base classes, evaluate on the new classes, then print the Base / New / H table.
# Finished runs are skipped, unfinished ones resume.
#
# Usage: bash scripts/pmoe/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#   SHOTS    shots per base class (the papers use 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/PMoE/ (default: vit_b16_ep10_ctxv1, CLIP + DINO experts; give the DINO
#            checkpoint with `-- TRAINER.PMOE.CHECKPOINTS "['', '/path/dino_vitb16.pth']"`; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
base2new_sweep "$REPO_ROOT/scripts/pmoe/base2new.sh" PMoE "$@"
