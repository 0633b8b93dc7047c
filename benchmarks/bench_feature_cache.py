"""The image-feature cache on the demo base2new sweep: total evaluation time with and without it, same tables.

For each trainer (default ZeroshotCLIP, CoOp, CoCoOp, KgCoOp) the demo base2new sweep over the seeds (default 1 2 3)
runs twice, one after the other, as a user would run it (``python -m dasslite.sweep base2new --dataset demo``):
``--no-feature-cache`` into ``<work>/off`` and with the cache (starting empty, in ``<work>/cache``) into
``<work>/on``. Alternating per trainer, both modes see the same machine load. Every run's evaluation time is what
train.py records in results.json (``feature_cache.seconds``: the whole ``trainer.test()``, class features included);
the sweeps' wall times (training included) are reported too. The Base/New/H tables of the two modes must be equal
to the last digit (exit status 1 otherwise).

    OMP_NUM_THREADS=1 python benchmarks/bench_feature_cache.py [--trainers ...] [--seeds 1 2 3] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dasslite import sweep as S  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINERS = ("ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp")
MODES = ("off", "on")


def sweep_argv(trainer: str, seeds: List[str], output: str, mode: str) -> List[str]:
    argv = ["base2new", "--trainer", trainer, "--dataset", "demo", "--seeds", *seeds, "--output", output]
    return argv + (["--no-feature-cache"] if mode == "off" else [])


def run_sweep(argv: List[str], log: str, env: Dict[str, str]) -> float:
    """Run one sweep as a process (its train.py runs log into ``log``); returns its wall time."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, "-m", "dasslite.sweep", *argv], cwd=REPO, env=env, stdout=fh,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"sweep {' '.join(argv)} failed (exit {rc}); see {log}")
    return time.perf_counter() - start


def evaluation_records(output: str, trainer: str) -> List[dict]:
    pattern = os.path.join(output, "base2new", "*", "demo", "shots_*", trainer, "*", "seed*", "results.json")
    records = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            records.append(json.load(f))
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    p.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    p.add_argument("--work", default=None, help="folder for outputs and the cache (default: a fresh temp folder)")
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = p.parse_args(argv)
    work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="bench_feature_cache_"))
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, DASSLITE_FEATURE_CACHE=os.path.join(work, "cache"))
    print(f"work folder: {work} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")

    per_trainer: Dict[str, dict] = {}
    tables: Dict[str, Dict[str, str]] = {m: {} for m in MODES}
    for trainer in args.trainers:
        row: Dict[str, dict] = {}
        for mode in MODES:
            output = os.path.join(work, mode)
            sweep = sweep_argv(trainer, args.seeds, output, mode)
            wall = run_sweep(sweep, os.path.join(work, f"{mode}_{trainer}.log"), env)
            records = evaluation_records(output, trainer)
            states: Dict[str, int] = {}
            for r in records:
                state = r.get("feature_cache", {}).get("state", "?")
                states[state] = states.get(state, 0) + 1
            eval_s = sum(r["feature_cache"]["seconds"] for r in records)
            row[mode] = {"sweep_wall_s": round(wall, 2), "eval_s": round(eval_s, 3), "runs": len(records),
                         "states": states}
            spec = S.resolve_spec(S.parse_args(sweep), environ=env, cwd=REPO)
            tables[mode][trainer] = S.collect_tables(spec)
            print(f"{trainer:>12} cache {mode:>3}: {len(records)} evaluations, {eval_s:7.2f} s evaluating, "
                  f"sweep {wall:7.1f} s, {states}", flush=True)
        row["eval_speedup"] = round(row["off"]["eval_s"] / max(row["on"]["eval_s"], 1e-9), 2)
        per_trainer[trainer] = row

    total = {m: sum(per_trainer[t][m]["eval_s"] for t in per_trainer) for m in MODES}
    wall = {m: sum(per_trainer[t][m]["sweep_wall_s"] for t in per_trainer) for m in MODES}
    same = all(tables["off"][t] == tables["on"][t] for t in per_trainer)
    summary = {"trainers": list(per_trainer), "seeds": args.seeds, "per_trainer": per_trainer,
               "total_eval_s": total, "eval_speedup": round(total["off"] / max(total["on"], 1e-9), 2),
               "total_sweep_wall_s": wall, "tables_identical": same,
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "work": work}
    print(f"\nTotal evaluation time: {total['off']:.2f} s without the cache, {total['on']:.2f} s with it: "
          f"{summary['eval_speedup']}x less")
    print(f"Total sweep wall time: {wall['off']:.1f} s without, {wall['on']:.1f} s with")
    print(f"Tables identical to the last digit: {same}")
    for trainer in per_trainer:
        print(f"\n{trainer} (with the cache):\n{tables['on'][trainer]}")
        if tables["off"][trainer] != tables["on"][trainer]:
            print(f"{trainer} WITHOUT the cache differs:\n{tables['off'][trainer]}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
