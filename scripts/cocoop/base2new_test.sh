#!/usr/bin/env bash
# CoCoOp's own base-to-new script (the CoOp repository's scripts/cocoop/base2new_test.sh): same arguments, same output
# folder output/base2new/test_new/<DATASET>/shots_16/<TRAINER>/<CFG>/seed<SEED>, which is also where
# scripts/<method>/base2new.sh writes. A thin wrapper over `python -m dasslite.sweep base2new --phase test_new`:
# a finished run is skipped, an unfinished one resumes. It needs the training (base2new_train.sh) finished.
#
# Usage: bash scripts/cocoop/base2new_test.sh DATASET SEED [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (eurosat, oxford_pets, ...) or demo (offline demo world, no data needed)
#   SEED     one seed, as in CoCoOp (also "1 2 3")
# Environment:
#   TRAINER  CoCoOp (default), or CoOp etc. as CoCoOp's comments suggest (CFG then: vit_b16_ctxv1, or
#            vit_b16_ep50_ctxv1 for imagenet)
#   CFG      recipe in configs/trainers/<TRAINER>/ (default: vit_b16_c4_ep10_batch1_ctxv1 for CoCoOp; demo on demo)
#   SHOTS    default 16                                     OUTPUT  output root (default: output)
#   LOADEP   checkpoint epoch the new-class test loads (default: the latest; CoCoOp's script: 10)
#   DATA     dataset root (required for real datasets)     GPUS, PYTHON
# The whole protocol with the Base / New / H table in one call: bash scripts/cocoop/base2new.sh DATASET 16 SEEDS
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [ $# -lt 2 ] || [ "${1#-}" != "$1" ] || [ "${2#-}" != "$2" ]; then
  print_usage "$REPO_ROOT/scripts/cocoop/base2new_test.sh"
fi
DATASET=$1
lineage_common_args "$2" evaluates
shift 2
lineage_sweep base2new 0 --trainer "${TRAINER:-CoCoOp}" --dataset "$DATASET" --shots "${SHOTS:-16}" \
  "${COMMON_ARGS[@]}" --phase test_new "$@"
