"""Table cells from an output tree: the ``seed<N>`` runs of one dataset × trainer × recipe folder, with the checks
that keep a run of the wrong kind out of a cell (an evaluation in a training folder, a model trained elsewhere), and
the recipe groups that let a trainer's per-dataset recipes share one table."""
from __future__ import annotations

import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from dasslite.recipes import RECIPES, ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS, default_cfg
from dasslite.results.runs import (LOG_FILE, SEED_DIR_RE, NoResultsError, Run, is_eval_only_log, read_run,
                                   subdirs)
from dasslite.results.stats import spread
# Datasets in the order of the CoOp/CoCoOp papers' tables; anything else follows alphabetically.
PAPER_ORDER = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
               "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")


@dataclass
class Cell:
    """One column of one row: the runs behind it and their statistics."""

    runs: List[Run]
    ci95: bool = False
    ignored: List[str] = field(default_factory=list)  # sub-folders that are not seed<N> runs (never averaged)

    @property
    def by_label(self) -> Dict[str, float]:
        return {r.label: r.value for r in self.runs if r.complete}

    @property
    def n(self) -> int:
        return len(self.by_label)

    @property
    def mean(self) -> float:
        vals = list(self.by_label.values())
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def spread(self) -> float:
        return spread(list(self.by_label.values()), self.ci95)

    @property
    def missing(self) -> List[Run]:
        return [r for r in self.runs if not r.complete]


def resolve_protocol_root(root: str, protocol: str, markers: Sequence[str]) -> str:
    """``root`` itself or ``root/<protocol>``, whichever holds one of the ``markers`` folders."""
    for candidate in (root, osp.join(root, protocol)):
        if any(osp.isdir(osp.join(candidate, m)) for m in markers):
            return candidate
    if not osp.isdir(root):
        raise NoResultsError(f"no complete runs under {root}: no such folder")
    wanted = " and ".join(f"{m}/" for m in markers)
    raise NoResultsError(f"no complete runs under {root}: expected {wanted} (the output/{protocol} layout) there or "
                         f"in {osp.join(root, protocol)}")


def shots_label(shots) -> Optional[str]:
    if shots is None:
        return None
    shots = str(shots)
    return shots if shots.startswith("shots_") else f"shots_{shots}"


def shots_number(label: str) -> float:
    """K of a ``shots_<K>`` folder name (digits only); inf for any other name (sorted last, never a K)."""
    match = re.fullmatch(r"shots_(\d+)", label)
    return float(match.group(1)) if match else float("inf")


def iter_cfg_dirs(split_dir: str, datasets=None, shots=None, trainer=None, cfg=None):
    """``(dataset, shots folder, trainer, cfg, folder)`` for every ``<split>/<ds>/shots_<K>/<T>/<cfg>`` that passes
    the filters (``datasets`` and ``shots`` are collections, ``trainer`` and ``cfg`` names; None keeps all)."""
    if not osp.isdir(split_dir):
        return
    for ds_dir in subdirs(split_dir):
        ds = osp.basename(ds_dir)
        if datasets is not None and ds not in datasets:
            continue
        for shots_dir in subdirs(ds_dir):
            shots_name = osp.basename(shots_dir)
            if not shots_name.startswith("shots_") or (shots is not None and shots_name not in shots):
                continue
            for t_dir in subdirs(shots_dir):
                if trainer and osp.basename(t_dir) != trainer:
                    continue
                for cfg_dir in subdirs(t_dir):
                    if cfg and osp.basename(cfg_dir) != cfg:
                        continue
                    yield ds, shots_name, osp.basename(t_dir), osp.basename(cfg_dir), cfg_dir


def is_zero_shot(trainer: str, cfg: str) -> bool:
    """Runs of a zero-shot trainer, or the sweep's ``--zero-shot`` folder (``<cfg>_zeroshot``) of any trainer."""
    return trainer in ZERO_SHOT_TRAINERS or cfg.endswith(ZERO_SHOT_SUFFIX)


def run_eval_only(run: Run) -> Optional[bool]:
    """Whether a complete run was an evaluation only: results.json's ``eval_only``, else the log's argument dump."""
    if "eval_only" in run.record:
        return bool(run.record["eval_only"])
    if run.source and osp.basename(run.source) == LOG_FILE:
        try:
            with open(run.source, encoding="utf-8", errors="replace") as f:
                return is_eval_only_log(f.read().splitlines())
        except OSError:
            return None
    return None


def trained_check(trainer: str, cfg: str, phase: str) -> Optional[Callable[[Run], Optional[str]]]:
    """For a trainer that trains (not ``is_zero_shot``): a ``check`` keeping evaluation-only runs out of its
    training cells (``phase="train"``) and evaluations of no model out of its evaluation cells (``"eval"``)."""
    if is_zero_shot(trainer, cfg):
        return None
    if phase == "train":
        def check(run: Run) -> Optional[str]:
            if run_eval_only(run):
                return (f"an evaluation-only run (eval_only: True; a zero-shot run?) in a training folder of "
                        f"{trainer}: not a trained result")
            return None
    else:
        def check(run: Run) -> Optional[str]:
            if "model_dir" in run.record and not run.record["model_dir"]:
                return f"evaluated no trained model (model_dir is empty; a zero-shot run?), not a {trainer} result"
            return None
    return check


def both_checks(*checks: Optional[Callable[[Run], Optional[str]]]) -> Optional[Callable[[Run], Optional[str]]]:
    """One check from several (the first reason wins); None when none is given."""
    checks = [c for c in checks if c is not None]
    if not checks:
        return None
    return lambda run: next((why for why in (c(run) for c in checks) if why), None)


def read_cell(folder: str, seeds: Optional[Sequence[int]], expect: Dict[str, object], keyword: str, ci95: bool,
              log_only: bool, check: Optional[Callable[[Run], Optional[str]]] = None) -> Cell:
    """The ``seed<N>`` folders under ``folder`` as a Cell. With ``seeds``, exactly those (an absent one is missing).

    Other sub-folders (``seed1_old``, ``backup``) are no runs: they are listed in ``Cell.ignored``, never averaged.
    ``check(run)`` may return a reason that makes a complete run missing (e.g. a model trained elsewhere).
    """
    subs = subdirs(folder) if osp.isdir(folder) else []
    seed_dirs = [d for d in subs if SEED_DIR_RE.match(osp.basename(d))]
    ignored = [d for d in subs if not SEED_DIR_RE.match(osp.basename(d))]
    if seeds is None:
        dirs = seed_dirs if osp.isdir(folder) else [folder]  # an absent folder is one missing entry
    else:
        by_seed = {}
        for d in seed_dirs:
            by_seed[int(SEED_DIR_RE.match(osp.basename(d)).group(1))] = d
        dirs = [by_seed.get(s, osp.join(folder, f"seed{s}")) for s in seeds]
    runs = []
    for d in dirs:
        if not osp.isdir(d):
            runs.append(Run(path=d, problem="not run (no such folder)"))
            continue
        run = read_run(d, keyword=keyword, signal="auto", log_only=log_only, expect=expect)
        problem = check(run) if (check and run.complete) else None
        if problem:
            run.value, run.problem = None, problem
        runs.append(run)
    return Cell(runs, ci95, ignored)


def no_results(root: str, filters: Sequence[tuple], missing: Sequence[Run]) -> NoResultsError:
    what = ", ".join(f"{k}={v}" for k, v in filters if v)
    msg = f"no complete runs under {root}" + (f" ({what})" if what else "")
    return NoResultsError(msg + "".join(f"\n  {r.path}: {r.problem}" for r in list(missing)[:20]))
# Recipe groups: a trainer with per-dataset recipes (dasslite.recipes.RECIPES) trains each dataset with its own cfg.
# Without --cfg, the runs made with those defaults share one table (label PER_DATASET) so that they get an Average;
# runs made with any other cfg keep a table of their own.
PER_DATASET = "per-dataset recipes"


def recipe_group(trainer: str, dataset: str, cfg: str) -> str:
    """``PER_DATASET`` when ``cfg`` is the sweep's per-dataset default for (trainer, dataset), else ``cfg``."""
    return PER_DATASET if trainer in RECIPES and cfg == default_cfg(trainer, dataset) else cfg


def dataset_sort_key(name: str):
    low = name.lower()
    return (0, PAPER_ORDER.index(low), "") if low in PAPER_ORDER else (1, 0, low)
