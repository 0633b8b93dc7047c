#!/usr/bin/env bash
# CoOp's own few-shot script (the CoOp repository's scripts/coop/main.sh): same arguments, same output folders
# output/<DATASET>/CoOp/<CFG>_<SHOTS>shots/nctx<NCTX>_csc<CSC>_ctp<CTP>/seed<S>, seeds 1 2 3, trained on all classes.
# A thin wrapper over `python -m dasslite.sweep fewshot`: a finished run is skipped, an unfinished one resumes
# (CoOp's script skipped any existing folder). Per-seed results: python parse_test_res.py <the folder above seed<S>>
#
# Usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [SEEDS] [SWEEP OPTIONS] [-- KEY VALUE ...]
#   DATASET  a name in configs/datasets/ (caltech101, eurosat, ...) or demo (with CFG demo)
#   CFG      recipe in configs/trainers/CoOp/ (rn50, rn50_ep50, vit_b16_ep50, ...)
#   CTP      class token position: end | middle | front
#   NCTX     number of context tokens (CoOp's papers: 16; 4 for the ctxv1 recipes, whose CTX_INIT sets it)
#   SHOTS    shots per class (1, 2, 4, 8, 16)
#   CSC      class-specific context: False | True
#   SEEDS    default "1 2 3"
# Environment:
#   DATA     dataset root (required for real datasets)     OUTPUT  output root (default: output)
#   GPUS     e.g. 0,1,2,3: one run per GPU                  PYTHON  interpreter
# Our own protocol script for the same curves: bash scripts/mocoop/fewshot.sh (per method).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [ $# -lt 6 ]; then
  print_usage "$REPO_ROOT/scripts/coop/main.sh"
fi
DATASET=$1 CFG=$2 CTP=$3 NCTX=$4 SHOTS=$5 CSC=$6
shift 6
SEEDS="1 2 3"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  SEEDS=$1
  shift
fi
lineage_common_args "$SEEDS"
lineage_sweep fewshot 3 TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
  --trainer CoOp --dataset "$DATASET" --shots "$SHOTS" "${COMMON_ARGS[@]}" \
  --layout "fewshot={output}/{dataset}/{trainer}/{cfg}_{shots}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed{seed}" "$@"
