"""Few-shot tables (``output/fewshot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``): a row per dataset, a column per
K (the test after training on all classes), and an Average row (``(k/n)`` when only k of the n datasets have it)."""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, Iterable, List, Optional

from dasslite.results.cells import (dataset_sort_key, iter_cfg_dirs, no_results, read_cell, recipe_group,
                                    shots_label, shots_number, trained_check)
from dasslite.results.grid import GridRow, GridTable
from dasslite.results.runs import NoResultsError


def collect_fewshot(root: str, datasets: Optional[Iterable[str]] = None, trainer: Optional[str] = None,
                    cfg: Optional[str] = None, shots: Optional[Iterable] = None,
                    seeds: Optional[Iterable[int]] = None, keyword: str = "accuracy", ci95: bool = False,
                    log_only: bool = False) -> List[GridTable]:
    """Walk ``ROOT/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` (ROOT = output/fewshot) into one table per (T, cfg group).

    A run counts only if its results.json (when there is one) says ``subsample_classes: all`` and the folder's K.
    """
    if osp.isdir(osp.join(root, "fewshot")):
        root = osp.join(root, "fewshot")
    if not osp.isdir(root):
        raise NoResultsError(f"no complete runs under {root}: no such folder")
    want_ds = set(datasets) if datasets else None
    want_shots = {shots_label(k) for k in shots} if shots else None
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    found: Dict[tuple, Dict[str, Dict[str, str]]] = {}  # (T, group) -> ds -> shots folder -> cfg
    for ds, shots_name, t_name, cfg_name, _ in iter_cfg_dirs(root, want_ds, want_shots, trainer, cfg):
        if not math.isfinite(shots_number(shots_name)):
            continue  # not a shots_<K> folder
        group = cfg_name if cfg else recipe_group(t_name, ds, cfg_name)
        found.setdefault((t_name, group), {}).setdefault(ds, {})[shots_name] = cfg_name
    if want_ds and want_shots and trainer and cfg:  # asked for by name: absent runs are listed as missing
        for ds in want_ds:
            for k in want_shots:
                found.setdefault((trainer, cfg), {}).setdefault(ds, {}).setdefault(k, cfg)
    tables = []
    for (t_name, group), per_ds in sorted(found.items()):
        columns = sorted({k for shots_map in per_ds.values() for k in shots_map}, key=shots_number)
        rows = []
        for ds in sorted(per_ds, key=dataset_sort_key):
            cells = {k: read_cell(osp.join(root, ds, k, t_name, c), want_seeds,
                                  {"subsample_classes": "all", "num_shots": int(shots_number(k))},
                                  keyword, ci95, log_only, check=trained_check(t_name, c, "train"))
                     for k, c in per_ds[ds].items()}
            rows.append(GridRow(ds, cells, t_name, next(iter(per_ds[ds].values()))))
        tables.append(GridTable("fewshot", root, t_name, group, "", "", columns, rows, ci95))
    if not any(c.n for t in tables for r in t.rows for c in r.cells.values()):
        raise no_results(root, (("dataset", ",".join(sorted(want_ds)) if want_ds else None), ("trainer", trainer),
                                ("cfg", cfg), ("seeds", want_seeds)),
                         [r for t in tables for row in t.rows for r in row.missing])
    return tables
