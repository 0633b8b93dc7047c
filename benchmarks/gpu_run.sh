#!/usr/bin/env bash
# The GPU benchmark in one command: every trainer (ZeroshotCLIP, CoOp, MoCoOp, LASP, KgCoOp, CoCoOp) at ViT-B/16,
# C = 100 and 1000, fast and reference paths; then the results table and the targets (issue 4's, and MoCoOp's two
# ratios with PASS/FAIL) are printed and written into the results section of benchmarks/README.md. Last, the text
# core alone (bench_text.py, --buckets 1 2 3 4) into <RESULTS_DIR>/text_<arch>.json, and pMoE-style's expert scaling
# (bench_pmoe.py) into <RESULTS_DIR>/pmoe_<arch>.json.
#
#   bash benchmarks/gpu_run.sh                              # ViT-B/16 only: a few minutes on one H100/H200
#   ARCHS="ViT-B/16 ViT-L/14" bash benchmarks/gpu_run.sh    # both backbones: about twice as long
#   ARCHS="open_clip:ViT-B-16" bash benchmarks/gpu_run.sh   # an open_clip architecture, random weights
#
# Each timed phase stops after MAX_CASE_S seconds (default 10; at least one step is always kept), which bounds the
# slow reference paths at C = 1000. Extra arguments go to every measuring call (e.g. --trainers CoOp MoCoOp).
# PYTHON (default python), DEVICE (default cuda: fails fast without a GPU), TEXT_OPTS (extra bench_text.py
# options, e.g. "--classes 100"), RESULTS_DIR (default benchmarks/results) and README (default
# benchmarks/README.md; empty: leave it alone) can be set too. A backbone's results replace
# <RESULTS_DIR>/<arch>.json only when its run succeeds, and only successful runs go into the README; a failed run
# leaves the old file as it was and keeps what it measured in <arch>.failed.json. The JSON is rewritten after every
# case, so a run that is killed leaves <arch>.partial.json. The exit status is 1 when a case's two paths disagree
# or a case fails with an error other than running out of memory. PARTS (default "trainers text cache pmoe fsmoe")
# picks the parts to run, e.g. PARTS=trainers for the trainers' table alone.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ARCHS=${ARCHS:-ViT-B/16}
MAX_CASE_S=${MAX_CASE_S:-10}
DEVICE=${DEVICE:-cuda}
README=${README-benchmarks/README.md}
RESULTS_DIR=${RESULTS_DIR:-benchmarks/results}
mkdir -p "$RESULTS_DIR"
PARTS=${PARTS:-trainers text cache pmoe fsmoe}
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
status=0
files=()
want trainers && for arch in $ARCHS; do
    name=$(echo "$arch" | tr 'A-Z' 'a-z' | tr -d '/' | tr '-' '_')  # ViT-B/16 -> vit_b16
    out="$RESULTS_DIR/$name.json"
    partial="$RESULTS_DIR/$name.partial.json"
    rm -f "$partial"
    rc=0
    "$PYTHON" benchmarks/bench_trainers.py --arch "$arch" --device "$DEVICE" --max-case-s "$MAX_CASE_S" \
        --out "$partial" "$@" || rc=$?
    if [ "$rc" -eq 0 ] && [ -f "$partial" ]; then
        mv -f "$partial" "$out"
        files+=("$out")
    else
        [ "$rc" -eq 0 ] && rc=1
        status=$rc
        if [ -f "$partial" ]; then
            mv -f "$partial" "$RESULTS_DIR/$name.failed.json"
            echo "gpu_run.sh: $arch failed (exit $rc): $out is left as it was; this run's results are in" \
                 "$RESULTS_DIR/$name.failed.json" >&2
        else
            echo "gpu_run.sh: $arch failed (exit $rc) before writing results: $out is left as it was" >&2
        fi
    fi
done
# The text core alone (seconds on a GPU): its shortcuts against one another, and the per-bucket cost calibration.
want text && for arch in $ARCHS; do
    name=$(echo "$arch" | tr 'A-Z' 'a-z' | tr -d '/' | tr '-' '_')
    # shellcheck disable=SC2086  # TEXT_OPTS: extra options for bench_text.py, word-split on purpose
    "$PYTHON" benchmarks/bench_text.py --arch "$arch" --device "$DEVICE" --buckets 1 2 3 4 \
        --out "$RESULTS_DIR/text_$name.json" ${TEXT_OPTS:-} || status=$?
done
# The image-feature cache on the GPU (seconds): cached == uncached logits per eligible trainer, within the precision's
# tolerance (the tests run on the GPU when one is visible).
want cache && { "$PYTHON" -m pytest -q tests/test_feature_cache.py -k "equal or results_json or misses or corrupt" \
    || status=$?; }
# pMoE-style (bench_pmoe.py, about a minute): 1, 2 and 3 frozen experts of the arch's size (ViT-B/16, or tiny), each
# K-expert step against the sum of the single-expert VPT-deep steps (target <= 1.15), with peak memory per case.
want pmoe && for arch in $ARCHS; do
    case "$arch" in ViT-B/16|tiny) ;; *) continue ;; esac
    name=$(echo "$arch" | tr 'A-Z' 'a-z' | tr -d '/' | tr '-' '_')
    "$PYTHON" benchmarks/bench_pmoe.py --arch "$arch" --device "$DEVICE" --dispatchers gate attention topk \
        --out "$RESULTS_DIR/pmoe_$name.json" || status=$?
done
# FSMoE's two targets (issue 9) are stated at C = 100 and batch 8: its fast step, its per-image 77-token reference
# step and a CoCoOp step, timed interleaved (medians of 10 rounds) into <RESULTS_DIR>/fsmoe_step_ratios_<arch>.json
# (FSMOE_OPTS: extra bench_step_ratios.py options, which override these, e.g. "--rounds 3").
want fsmoe && for arch in $ARCHS; do
    name=$(echo "$arch" | tr 'A-Z' 'a-z' | tr -d '/' | tr '-' '_')
    # shellcheck disable=SC2086  # FSMOE_OPTS: extra options, word-split on purpose
    "$PYTHON" benchmarks/bench_step_ratios.py --arch "$arch" --device "$DEVICE" --classes 100 --batch 8 --rounds 10 \
        --prec fp16 --cases FSMoE FSMoE:ref CoCoOp --out "$RESULTS_DIR/fsmoe_step_ratios_$name.json" \
        ${FSMOE_OPTS:-} || status=$?
done
if [ ${#files[@]} -gt 0 ]; then
    "$PYTHON" benchmarks/bench_trainers.py --report "${files[@]}" ${README:+--update-readme "$README"} || status=$?
fi
exit $status
