#!/usr/bin/env bash
# LASP (language-aware soft prompting), cross-dataset transfer: for each seed, train once on 16-shot ImageNet (all
# classes), then evaluate that model on the other ten datasets (caltech101 ... ucf101); then the table (source, each
# target, target average).
# Finished runs are skipped, unfinished ones resume. The table again:
#   python -m dasslite.results xd output/xd --trainer LASP
#
# Usage: bash scripts/lasp/xd.sh [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   SEEDS    default "1 2 3" (also "1,2")
#   SWEEP OPTIONS are passed on to `python -m dasslite.sweep xd`, e.g. --targets D ..., --source D, --dry-run
#   There is no DATASET argument, and no xd run on the demo world (a single dataset).
# Environment:
#   CFG      recipe in configs/trainers/LASP/ (default: the source's, for imagenet
#            vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b)
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch the evaluations load (default: the latest)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
protocol_sweep "$REPO_ROOT/scripts/lasp/xd.sh" xd LASP "$@"
