#!/usr/bin/env bash
# The GPU benchmark in one command: every trainer (ZeroshotCLIP, CoOp, CoCoOp, KgCoOp, LASP, MoCoOp) at ViT-B/16,
# C = 100 and 1000, fast and reference paths; then the results table and the targets (issue 4's, and MoCoOp's two
# ratios with PASS/FAIL) are printed and written into the results section of benchmarks/README.md.
#
#   bash benchmarks/gpu_run.sh                              # ViT-B/16 only: a few minutes on one H100/H200
#   ARCHS="ViT-B/16 ViT-L/14" bash benchmarks/gpu_run.sh    # both backbones: about twice as long
#
# Each timed phase stops after MAX_CASE_S seconds (default 10; at least one step is always kept), which bounds the
# slow reference paths at C = 1000. Extra arguments go to every measuring call (e.g. --trainers CoOp MoCoOp).
# PYTHON (default python), DEVICE (default cuda: fails fast without a GPU) and README (default
# benchmarks/README.md; empty: leave it alone) can be set too. The exit status is bench_trainers.py's: 1 when a
# case's two paths disagree or a case fails with an error other than running out of memory.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ARCHS=${ARCHS:-ViT-B/16}
MAX_CASE_S=${MAX_CASE_S:-10}
DEVICE=${DEVICE:-cuda}
README=${README-benchmarks/README.md}
mkdir -p benchmarks/results
status=0
files=()
for arch in $ARCHS; do
    out="benchmarks/results/$(echo "$arch" | tr 'A-Z' 'a-z' | tr -d '/' | tr '-' '_').json"  # ViT-B/16 -> vit_b16
    rm -f "$out"
    "$PYTHON" benchmarks/bench_trainers.py --arch "$arch" --device "$DEVICE" --max-case-s "$MAX_CASE_S" \
        --out "$out" "$@" || status=$?
    [ -f "$out" ] && files+=("$out")
done
if [ ${#files[@]} -gt 0 ]; then
    "$PYTHON" benchmarks/bench_trainers.py --report "${files[@]}" ${README:+--update-readme "$README"} || status=$?
fi
exit $status
