"""The VTAB-1k protocol: its 19 tasks (folder name -> classes), their groups, and the results table.

Runs are laid out by ``scripts/pmoe/vtab.sh`` as ``<root>/<task>/<Trainer>/<cfg>/seed<S>/results.json``.

    python -m dasslite.vtab output/vtab [--ci95]

prints a row per task (top-1 mean ± std over seeds) and the mean of each group (Natural, Specialized,
Structured; over the tasks that have results, marked with the count when a group is incomplete). Runs are read with
``dasslite.results.runs.read_run`` (complete ``results.json``, else ``log.txt``); unfinished runs are listed, never
averaged.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from dasslite.results.runs import SEED_DIR_RE, read_run
from dasslite.results.stats import spread

VTAB_GROUPS: Dict[str, Dict[str, int]] = {
    "Natural": {"cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
                "svhn": 10, "sun397": 397},
    "Specialized": {"patch_camelyon": 2, "eurosat": 10, "resisc45": 45, "diabetic_retinopathy": 5},
    "Structured": {"clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4, "dsprites_loc": 16,
                   "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9},
}
VTAB_TASKS: Dict[str, int] = {task: n for group in VTAB_GROUPS.values() for task, n in group.items()}


def collect_vtab(root: str, ci95: bool = False) -> List[list]:
    """Rows ``[label, mean, spread, seeds, missing runs]`` per task found under ``root``, then per group."""
    if not osp.isdir(root):
        raise FileNotFoundError(f"no VTAB-1k results under {root}: no such folder")
    rows, means = [], {}
    for task in VTAB_TASKS:
        task_dir = osp.join(root, task)
        if not osp.isdir(task_dir):
            continue
        values, missing = [], []
        for dirpath, dirnames, _ in os.walk(task_dir):
            dirnames.sort()
            if SEED_DIR_RE.match(osp.basename(dirpath)):
                dirnames.clear()  # a run folder: its checkpoints are not runs
                run = read_run(dirpath)
                (values.append(run.value) if run.value is not None else missing.append(dirpath))
        if values:
            means[task] = float(np.mean(values))
        rows.append([task, means.get(task), spread(values, ci95) if values else None, len(values), missing])
    for group, tasks in VTAB_GROUPS.items():
        have = [means[t] for t in tasks if t in means]
        if have:
            label = group if len(have) == len(tasks) else f"{group} ({len(have)}/{len(tasks)} tasks)"
            rows.append([label, float(np.mean(have)), None, None, []])
    return rows


def format_vtab(rows: Sequence[list]) -> str:
    from tabulate import tabulate

    body = [[label, "-" if mean is None else f"{mean:.2f}" + ("" if sp is None else f" ± {sp:.2f}"),
             "" if seeds is None else seeds] for label, mean, sp, seeds, _ in rows]
    lines = ["VTAB-1k top-1 (mean ± std over seeds; group rows: mean over tasks)",
             tabulate(body, headers=["task", "top-1", "seeds"], tablefmt="github", disable_numparse=True)]
    for label, _, _, _, missing in rows:
        lines += [f"  missing ({label}): {m}" for m in missing]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dasslite.vtab", description="VTAB-1k results table")
    parser.add_argument("root", help="the vtab output folder (<root>/<task>/<Trainer>/<cfg>/seed<S>)")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence half-width instead of the std")
    args = parser.parse_args(argv)
    try:
        print(format_vtab(collect_vtab(args.root, args.ci95)))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
