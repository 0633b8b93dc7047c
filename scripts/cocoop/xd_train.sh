#!/usr/bin/env bash
# CoCoOp's own cross-dataset training script (the CoOp repository's scripts/cocoop/xd_train.sh): same argument, same
# output folder output/imagenet/<TRAINER>/<CFG>_16shots/seed<SEED> (16-shot ImageNet, all classes). A thin wrapper
# over `python -m dasslite.sweep xd --phase train`: a finished run is skipped, an unfinished one resumes.
#
# Usage: bash scripts/cocoop/xd_train.sh SEED [SWEEP OPTIONS] [-- KEY VALUE ...]
#   SEED     one seed, as in CoCoOp (also "1 2 3")
# Environment:
#   TRAINER  CoCoOp (default) or another trainer      CFG  recipe (default: vit_b16_c4_ep10_batch1_ctxv1 for CoCoOp)
#   SOURCE   dataset trained on (default: imagenet)   OUTPUT  output root (default: output)
#   DATA     dataset root (required)                  GPUS, PYTHON
# Then: bash scripts/cocoop/xd_test.sh DATASET SEED for each target. Train and evaluate every target with the
# table in one call: bash scripts/mocoop/xd.sh or scripts/lasp/xd.sh (our layout, output/xd/...).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  print_usage "$REPO_ROOT/scripts/cocoop/xd_train.sh"
fi
lineage_common_args "$1"
shift
lineage_sweep xd 0 --trainer "${TRAINER:-CoCoOp}" --source "${SOURCE:-imagenet}" "${COMMON_ARGS[@]}" --phase train \
  --layout "train={output}/{dataset}/{trainer}/{cfg}_{shots}shots/seed{seed}" "$@"
