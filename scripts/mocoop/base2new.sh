#!/usr/bin/env bash
# MoCoOp (mixture of prompt experts with a router), base-to-new generalisation (CoCoOp's protocol): for each seed,
# train on the base classes (the text loss also sees the new class names, as virtual classes), evaluate on the new
# classes, then print the Base / New / H table.
# Finished runs are skipped, unfinished ones resume. The table again, beside the paper's numbers:
#   python -m dasslite.results base2new output/base2new --trainer MoCoOp --paper
#
# Usage: bash scripts/mocoop/base2new.sh DATASET SHOTS [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#            or all (the 11 datasets of the papers' tables) or a list (eurosat,dtd or "eurosat dtd"): one plan, one pool
#   SHOTS    shots per base class (the papers use 16)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep base2new`, e.g. --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/MoCoOp/ (default: the authors' recipe for DATASET, dasslite.recipes.RECIPES:
#            ep50 for caltech101/dtd/ucf101, ep300 for eurosat, ep10 batch 32 for food101, ep10 batch 1 (_imagenet)
#            for imagenet, ep25 otherwise; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch for the new-class evaluation (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
protocol_sweep "$REPO_ROOT/scripts/mocoop/base2new.sh" base2new MoCoOp "$@"
