#!/usr/bin/env bash
# CoCoOp's own cross-dataset evaluation script (the CoOp repository's scripts/cocoop/xd_test.sh): same arguments, same
# output folder output/evaluation/<TRAINER>/<CFG>_16shots/<DATASET>/seed<SEED>, loading the model that
# xd_train.sh trained (output/imagenet/<TRAINER>/<CFG>_16shots/seed<SEED>, which must be finished). A thin wrapper
# over `python -m dasslite.sweep xd --phase test`: a finished evaluation is skipped.
#
# Usage: bash scripts/cocoop/xd_test.sh DATASET SEED [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  the target: a name in configs/datasets/ (caltech101, ..., imagenetv2, imagenet_sketch, ...)
#   SEED     one seed, as in CoCoOp (also "1 2 3")
# Environment:
#   TRAINER  CoCoOp (default) or another trainer      CFG  recipe (default: vit_b16_c4_ep10_batch1_ctxv1 for CoCoOp)
#   SOURCE   dataset trained on (default: imagenet)   OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch (default: the latest; CoCoOp's script: 10)
#   DATA     dataset root (required)                  GPUS, PYTHON
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [ $# -lt 2 ] || [ "${1#-}" != "$1" ] || [ "${2#-}" != "$2" ]; then
  print_usage "$REPO_ROOT/scripts/cocoop/xd_test.sh"
fi
DATASET=$1
lineage_common_args "$2" evaluates
shift 2
lineage_sweep xd 0 --trainer "${TRAINER:-CoCoOp}" --source "${SOURCE:-imagenet}" --targets "$DATASET" \
  "${COMMON_ARGS[@]}" --phase test --layout "train={output}/{dataset}/{trainer}/{cfg}_{shots}shots/seed{seed}" \
  --layout "test={output}/evaluation/{trainer}/{cfg}_{shots}shots/{dataset}/seed{seed}" "$@"
