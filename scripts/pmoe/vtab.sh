#!/usr/bin/env bash
# pMoE-style on VTAB-1k (VPT's protocol): for each seed, train on the 1,000 training images of TASK
# (train800val200.txt) and test on test.txt, then print the VTAB-1k table of everything under $OUTPUT/vtab.
# A run whose results.json is complete is skipped; an unfinished one resumes in its folder. Nothing is deleted.
#
# Usage: bash scripts/pmoe/vtab.sh TASK [SEEDS] [-- KEY VALUE ...]
#   TASK     a VTAB-1k task folder name (cifar, caltech101, dtd, oxford_flowers102, oxford_iiit_pet, svhn, sun397,
#            patch_camelyon, eurosat, resisc45, diabetic_retinopathy, clevr_count, clevr_dist, dmlab, kitti,
#            dsprites_loc, dsprites_ori, smallnorb_azi, smallnorb_ele) or all (the 19 in turn)
#   SEEDS    default "1" (also "1 2 3" or "1,2")
#   KEY VALUE opts after -- go to every train.py run, e.g. -- TRAINER.PMOE.CHECKPOINTS "['/w/dino.pth', '/w/mae.pth']"
# Environment:
#   DATA     the root that holds vtab-1k/<task>/ (required)     OUTPUT  output root (default: output)
#   CFG      recipe in configs/trainers/PMoE/ (default: vtab_vit_b16_ep100)
#   PROTOCOL final (train800val200 -> test, default) | tune (train800 -> val200)
#   PYTHON   interpreter
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
[ $# -ge 1 ] || print_usage "$REPO_ROOT/scripts/pmoe/vtab.sh"
task=$1
shift
seeds=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  seeds=$1
  shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
if [ -z "${DATA:-}" ]; then
  echo "error: set DATA to the folder that holds vtab-1k/<task>/" >&2
  exit 2
fi
split_seeds "$seeds"
cfg=${CFG:-vtab_vit_b16_ep100}
protocol=${PROTOCOL:-final}
out_root="${OUTPUT:-output}/vtab"
if [ "$task" = all ]; then
  read -r -a tasks <<< "$("$PYTHON" -c 'from dasslite.vtab import VTAB_TASKS; print(" ".join(VTAB_TASKS))')"
else
  tasks=("$task")
fi
for t in "${tasks[@]}"; do
  for seed in "${SEED_ARR[@]}"; do
    run_dir="$out_root/$t/PMoE/$cfg/seed$seed"
    if [ "$protocol" != final ]; then
      run_dir="$out_root/$protocol/$t/PMoE/$cfg/seed$seed"
    fi
    if [ -f "$run_dir/results.json" ] && grep -q '"complete": true' "$run_dir/results.json"; then
      echo "Results exist in $run_dir (complete); skipping"
      continue
    fi
    "$PYTHON" train.py --root "$DATA" --seed "$seed" --trainer PMoE \
      --dataset-config-file configs/datasets/vtab.yaml --config-file "configs/trainers/PMoE/$cfg.yaml" \
      --output-dir "$run_dir" DATASET.VTAB_TASK "$t" DATASET.VTAB_PROTOCOL "$protocol" "$@"
  done
done
"$PYTHON" -m dasslite.vtab "$out_root"
