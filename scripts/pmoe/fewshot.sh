#!/usr/bin/env bash
# pMoE-style, few-shot learning (CoOp's curves): for each of 1, 2, 4, 8 and 16 shots and each seed, train on all
# classes of DATASET; the test after training is the result. Then the table: a column per shot count.
# Finished runs are skipped, unfinished ones resume. The table again:
#   python -m dasslite.results fewshot output/fewshot --trainer PMoE
#
# Usage: bash scripts/pmoe/fewshot.sh DATASET [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep fewshot`, e.g. --shots 1 2 4, --dry-run, --ci95
# Environment:
#   CFG      recipe in configs/trainers/PMoE/ (default: vit_b16_ep10_ctxv1; demo for the demo dataset)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
protocol_sweep "$REPO_ROOT/scripts/pmoe/fewshot.sh" fewshot PMoE "$@"
