#!/usr/bin/env bash
# FSMoE, base-to-new generalisation: for each seed, train on the base classes, evaluate on the new classes, then
# print the Base / New / H table. Finished runs are skipped, unfinished ones resume.
#
# Usage: bash scripts/fsmoe/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#   SHOTS    shots per base class (the CoOp-suite protocol uses 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/FSMoE/ (default: vit_b16_c8_ep10_batch32_coop; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
# Memory: TRAINER.FSMOE.TEXT_CHUNK_SIZE (after --) bounds how many prompts are encoded at once.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
base2new_sweep "$REPO_ROOT/scripts/fsmoe/base2new.sh" FSMoE "$@"
