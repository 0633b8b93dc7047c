#!/usr/bin/env bash
# LASP (language-aware soft prompting), few-shot learning (CoOp's curves): for each of 1, 2, 4, 8 and 16 shots and
# each seed, train on all classes of DATASET; the test after training is the result. Then the table: a column per shot
# count.
# Finished runs are skipped, unfinished ones resume. The table again:
#   python -m dasslite.results fewshot output/fewshot --trainer LASP
#
# Usage: bash scripts/lasp/fewshot.sh DATASET [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#            or all (the 11 datasets of the papers' tables) or a list (eurosat,dtd or "eurosat dtd"): one plan, one pool
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep fewshot`, e.g. --shots 1 2 4, --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/LASP/ (default: the one the LASP authors ran for DATASET,
#            dasslite.recipes.RECIPES: ep50 for caltech101/dtd/ucf101, ep300 for eurosat, ep10 batch 1 for food101
#            and imagenet, ep25 otherwise; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
protocol_sweep "$REPO_ROOT/scripts/lasp/fewshot.sh" fewshot LASP "$@"
