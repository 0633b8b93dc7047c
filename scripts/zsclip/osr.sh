#!/usr/bin/env bash
# Zero-shot CLIP (nothing trained), open-set recognition: known-class test images against
# unknown-class ones, scored from the same logits (MLS, MSP, MCM, energy, entropy), then the ACC / AUROC / OSCR /
# FPR95 table (mean ± std over splits x seeds).
# An open-set benchmark (osr_cifar10, osr_cifar_plus10, osr_cifar_plus50, osr_tinyimagenet): train on each split's
# known classes, then the open-set test. A CoOp dataset: the base classes are known, the new ones unknown, and the
# base2new training run of each seed is reused (trained first if missing). demo: this trainer beside the demo's
# others (dasslite.sweep.osr.DEMO_TRAINERS) on the offline demo world, one table.
# Finished runs are skipped, unfinished ones resume. The table and curves again:
#   python -m dasslite.results osr output/osr --plot osr.png
#
# Usage: bash scripts/zsclip/osr.sh DATASET [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  an open-set benchmark, a name in configs/datasets/ (eurosat, ...) or demo (no data needed)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep osr`, e.g. --splits 0 1, --dry-run, --ci95
# Environment:
#   TRAINER  ZeroshotCLIP (default) or ZeroshotCLIP2
#   CFG      recipe in configs/trainers/ZeroshotCLIP/ (default: the sweep's recipe for the dataset; demo on demo)
#   SHOTS    shots per known class (default 16; 4 on demo)    BALANCE  none (default), with_replacement, dedup
#   DATA     dataset root (required for real datasets)          OUTPUT   output root (default: output)
#   LOADEP   checkpoint epoch the evaluations load (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                       PYTHON   interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
osr_sweep "$REPO_ROOT/scripts/zsclip/osr.sh" "${TRAINER:-ZeroshotCLIP}" "$@"
