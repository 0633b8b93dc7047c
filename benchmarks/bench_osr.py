"""Open-set metrics: the macro-F1 threshold search, vectorised against one scikit-learn F1 per threshold.

``best_threshold`` evaluates every candidate threshold at once (``macro_f1_sweep``: per class, counts by binary
search); the reference calls ``f1_score`` once per threshold. Both are timed in one process, round-robin
(``--repeats`` rounds, median), on synthetic logits of the size of an open-set test, and must pick the same
threshold and F1. Also timed: every metric of all five scores (``evaluate_open_set``), the cost a run adds.

    python benchmarks/bench_osr.py --known 6000 --unknown 4000 --classes 6 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dasslite import osr_metrics as M  # noqa: E402


def reference_best_threshold(labels, known_s, known_pred, unknown_s, unknown_pred, num_classes):
    """One sklearn macro-F1 per candidate threshold (what the vectorised sweep replaces)."""
    best = (-np.inf, -1.0)
    for theta in M.candidate_thresholds(np.r_[known_s, unknown_s]):
        f1 = M.open_set_macro_f1(labels, known_s, known_pred, unknown_s, unknown_pred, theta, num_classes)
        if f1 > best[1]:
            best = (float(theta), f1)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--known", type=int, default=6000)
    p.add_argument("--unknown", type=int, default=4000)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, args.known)
    known = rng.normal(0, 1, (args.known, args.classes)) * 3
    known[np.arange(args.known), labels] += 6
    unknown = rng.normal(0, 1, (args.unknown, args.classes)) * 3
    ks, us = known.max(1), unknown.max(1)
    f1_args = (labels, ks, known.argmax(1), us, unknown.argmax(1), args.classes)
    ways: Dict[str, Callable[[], object]] = {
        "f1_search_vectorised": lambda: M.best_threshold(*f1_args),
        "f1_search_sklearn_loop": lambda: reference_best_threshold(*f1_args),
        "all_metrics_5_scores": lambda: M.evaluate_open_set(known, labels, unknown, logit_scale=100.0),
    }
    fast, slow = ways["f1_search_vectorised"](), ways["f1_search_sklearn_loop"]()
    if fast[0] != slow[0] or abs(fast[1] - slow[1]) > 1e-12:
        print(f"MISMATCH: vectorised {fast} vs sklearn loop {slow}", file=sys.stderr)
        return 1
    times: Dict[str, list] = {k: [] for k in ways}
    for _ in range(args.repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"known": args.known, "unknown": args.unknown, "classes": args.classes,
              "thresholds": int(len(M.candidate_thresholds(np.r_[ks, us]))), "median_s": med,
              "speedup_f1_search": med["f1_search_sklearn_loop"] / med["f1_search_vectorised"]}
    for name, t in med.items():
        print(f"{name:24s} {t * 1000:10.1f} ms")
    print(f"F1 threshold search: vectorised is {result['speedup_f1_search']:.0f}x the sklearn loop "
          f"({result['thresholds']} thresholds, same threshold and F1)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
