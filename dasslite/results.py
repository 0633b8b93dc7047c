"""Results of finished runs: per-folder summaries (CoOp's ``parse_test_res.py``) and protocol tables.

Where a number comes from
    A run folder counts only when it holds a finished test. ``results.json`` is preferred: train.py writes it
    atomically after a successful test, with ``"complete": true``. Without one (real Dassl, older runs), ``log.txt``
    is parsed the way CoOp's ``parse_test_res.py`` does: the regex ``\\* <keyword>: ([\\.\\deE+-]+)%`` is matched
    only on lines after the end signal (``Finish training`` for training logs, Dassl.ProGrad's ``Finished
    training`` too; ``=> result`` for evaluation logs) and the last match wins. One- and two-decimal numbers both
    parse. A folder with neither, or whose log stops before the end signal or before the number, is *missing*: it is
    listed with the reason and never enters a mean.

Which end signal
    ``signal="train"`` / ``"test"`` force one (``--test-log`` is ``"test"``, as in CoOp). ``"auto"`` (base-to-new
    tables) reads ``eval_only: True`` from the argument dump every train.py prints: evaluation-only logs use
    ``=> result``, everything else must reach ``Finish training``. A training log that printed a validation
    ``=> result`` but never finished therefore stays missing.

Which folders are runs (tables)
    In a table, the runs of a ``<cfg>`` folder are its ``seed<N>`` sub-folders (``seed_<N>`` and ``seed-<N>`` too);
    any other sub-folder (``seed1_old``, ``backup``) is no run: it is listed under the table as ignored and never
    averaged. (``summarize``, CoOp's parser, still reads every sub-folder.) Runs of a trainer that trains must be
    trainings in its training folders (``train_base``, ``fewshot``, xd/dg ``train``): a record or log saying
    ``eval_only: True`` there is missing, and so is an evaluation of no model (empty ``model_dir``) in its evaluation
    folders. Zero-shot trainers (ZeroshotCLIP, ZeroshotCLIP2) and ``<cfg>_zeroshot`` folders (the sweep's
    ``--zero-shot`` on a trainer that trains) hold evaluations only and get tables of their own.

Statistics
    ``mean ± std`` over seeds, ``std`` being ``np.std`` (population, ddof=0) exactly as in CoOp's parser; with
    ``ci95`` the spread is ``1.96 * std / sqrt(n)`` instead.

Base-to-new tables (``output/base2new/{train_base,test_new}/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``)
    Base is read from ``train_base`` (a training run, or an evaluation-only run for zero-shot trainers), New from
    ``test_new``. Following the CoCoOp/KgCoOp papers, H is the harmonic mean ``2BN/(B+N)`` of the *mean* Base and the
    *mean* New accuracy (not the mean of per-seed H); its ``±`` is the spread of the per-seed H over the seeds that
    have both numbers. The ``Average`` row averages the per-dataset means over the datasets that have both Base and
    New, and its H is again the harmonic mean of the two averages. The ``Seeds`` column gives how many seeds
    entered each mean (``3`` or, if Base and New differ, ``3/2``); missing runs are listed under the table.

Tables and recipes
    One table per (shots, trainer, cfg). A trainer with per-dataset recipes (``dasslite.sweep.RECIPES``: LASP,
    MoCoOp) trains each dataset with its own cfg: without ``--cfg`` the runs made with those default recipes share one
    table ("per-dataset recipes", the recipes listed under it) so that they get an Average; other cfgs keep their own.

Few-shot tables (``output/fewshot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``)
    A row per dataset, a column per K (mean ± spread of the test after training on all classes), and an ``Average``
    row: the mean of the dataset means of that column (``(k/n)`` when only k of the n datasets have it).
    ``--plot FILE.png`` also draws the curves (the MoCoOp paper's Figure 3): a panel per dataset and an ``Average``
    panel, x = shots on a log2 axis, one line with markers per table (trainer, and cfg when a trainer has two),
    error bars = the spread over seeds. A missing point is left out and the line breaks there (no interpolation);
    the Average of a line is drawn only at the shot counts where it has every dataset of the figure, so its points
    always average the same datasets. Needs matplotlib (the ``plots`` extra).

Cross-dataset / domain-generalisation tables (``output/{xd,dg}/train/<source>/...`` and ``.../test/<target>/...``)
    One table per (source, shots); a row per trainer / cfg trained on the source; columns: the source (the test after
    training), each target (evaluations of that model), and ``Target avg``, the mean of the target means (``(k/n)``
    when some are missing). A target run whose results.json loaded a model trained on another source is missing.

Published numbers (``--paper``; ``dasslite/paper_results.json``)
    ``base2new --paper`` adds "Paper Base / New / H" columns: the matching method of the MoCoOp paper's Table 1
    (ZeroshotCLIP -> CLIP, CoOp, CoCoOp, LASP, KgCoOp, MoCoOp; ZeroshotCLIP2's prompt ensemble is not the paper's
    single-template CLIP, and ``<cfg>_zeroshot`` tables are no trained method's). The Average row shows the printed
    average when our average covers all eleven datasets, else the mean of the paper's rows over our datasets (marked
    †); a printed average flagged unreliable (KgCoOp's) is shown as printed, marked *. ``dg --paper`` adds a
    "<method> (paper)" row from the paper's DG table (Appendix B). The paper has no cross-dataset table, so
    ``xd --paper`` only says so.

CLI
    python -m dasslite.results summarize DIR [--test-log] [--multi-exp] [--ci95] [--keyword accuracy] [--log-only]
    python -m dasslite.results base2new [ROOT] [--dataset D ...] [--trainer T] [--cfg C] [--shots K]
                                          [--seeds S ...] [--paper] [TABLE OPTIONS]
    python -m dasslite.results fewshot [ROOT] [--dataset D ...] [--trainer T] [--cfg C] [--shots K ...]
                                         [--seeds S ...] [--plot FILE.png] [TABLE OPTIONS]
    python -m dasslite.results xd|dg [ROOT] [--source D] [--targets D ...] [--trainer T] [--cfg C] [--shots K]
                                       [--seeds S ...] [--paper] [TABLE OPTIONS]
    python -m dasslite.results compare base2new|fewshot|xd|dg [ROOT] [--trainers T ...] [--baseline T] [--paper]
                                         [--format terminal|markdown|csv|latex] [--plot FILE.png]  (dasslite.compare)
    TABLE OPTIONS: [--ci95] [--format github|plain|...] [--csv F] [--markdown F] [--keyword K] [--log-only]
    (``python -m dasslite.results DIR`` is ``summarize DIR``; ``parse_test_res.py`` at the repository root is the
    same ``summarize`` under CoOp's name.)
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from dasslite.results_validation import record_problem

RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # upstream Dassl, Dassl.ProGrad (KgCoOp)
TEST_END_SIGNALS = ("=> result",)
SIGNALS = ("auto", "train", "test")

# --keyword (the word in the ``* <word>: X%`` log line) -> key in results.json
KEYWORD_TO_JSON = {"accuracy": "accuracy", "error": "error_rate", "error_rate": "error_rate", "macro_f1": "macro_f1"}
JSON_TO_LOG_KEYWORD = {"error_rate": "error"}

# Datasets in the order of the CoOp/CoCoOp papers' tables; anything else follows alphabetically.
PAPER_ORDER = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
               "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

_EVAL_ONLY_RE = re.compile(r"^\s*eval_only\s*:\s*(True|False)\s*$")
_SEED_RE = re.compile(r"^seed[_-]?(\d+)$")

# Trainers that train nothing (every run is an evaluation), and the suffix of the <cfg> folder where the sweep's
# ``--zero-shot`` puts the evaluations of a trainer that does train (``CoOp/vit_b16_ctxv1_zeroshot``).
ZERO_SHOT_TRAINERS = ("ZeroshotCLIP", "ZeroshotCLIP2")
ZERO_SHOT_SUFFIX = "_zeroshot"


class NoResultsError(RuntimeError):
    """Nothing complete where results were expected (the message names the folder and what was missing)."""


# ------------------------------------------------------------------------------------------------------------
# One run folder
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One run folder. ``value`` is the requested metric (percent) or None when the run is missing/unfinished."""

    path: str
    value: Optional[float] = None
    source: Optional[str] = None  # the file the value was read from
    problem: Optional[str] = None  # why the run does not count
    record: dict = field(default_factory=dict)  # results.json contents, when used

    @property
    def label(self) -> str:
        return osp.basename(osp.normpath(self.path))

    @property
    def seed(self) -> Optional[int]:
        match = _SEED_RE.match(self.label)
        if match:
            return int(match.group(1))
        seed = self.record.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def complete(self) -> bool:
        return self.value is not None


def _log_keyword(keyword: str) -> str:
    return JSON_TO_LOG_KEYWORD.get(keyword, keyword)


def _json_key(keyword: str) -> str:
    return KEYWORD_TO_JSON.get(keyword, keyword)


def _is_eval_only_log(lines: Sequence[str]) -> Optional[bool]:
    for line in lines:
        match = _EVAL_ONLY_RE.match(line)
        if match:
            return match.group(1) == "True"
    return None


def parse_log(path: str, keyword: str = "accuracy", signal: str = "train"):
    """Parse one log like CoOp's parser. Returns ``(value, problem)``: exactly one of them is None."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        return None, f"cannot read {osp.basename(path)}: {exc}"
    if signal == "auto":
        signal = "test" if _is_eval_only_log(lines) else "train"
    signals = TEST_END_SIGNALS if signal == "test" else TRAIN_END_SIGNALS
    pattern = re.compile(r"\* " + re.escape(_log_keyword(keyword)) + r": ([\.\deE+-]+)%")
    seen_end, value = False, None
    for line in lines:
        if not seen_end and any(s in line for s in signals):
            seen_end = True
        if seen_end:
            match = pattern.search(line)
            if match:
                try:
                    value = float(match.group(1))
                except ValueError:
                    continue
    if not seen_end:
        quoted = " / ".join(f"'{s}'" for s in signals)
        return None, f"{osp.basename(path)} never reaches {quoted} (unfinished run?)"
    if value is None:
        return None, (f"{osp.basename(path)} has no '* {_log_keyword(keyword)}: X%' line after the end signal "
                      f"(unfinished test?)")
    return value, None


def read_run(path: str, keyword: str = "accuracy", signal: str = "auto", log_only: bool = False,
             expect: Optional[Dict[str, object]] = None) -> Run:
    """Read one run folder: complete ``results.json`` first, else ``log.txt`` (see the module docstring).

    ``expect`` maps results.json fields to required values (e.g. ``{"subsample_classes": "new"}``); a record that
    disagrees makes the run missing rather than counting a number from the wrong protocol.
    """
    run = Run(path=path)
    json_path = osp.join(path, RESULTS_FILE)
    if not log_only and osp.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as exc:
            run.problem = f"{RESULTS_FILE} is unreadable ({exc})"
            return run
        if not isinstance(record, dict) or record.get("complete") is not True:
            run.problem = f"{RESULTS_FILE} is not marked complete"
            return run
        for key, wanted in (expect or {}).items():
            if key in record and record[key] != wanted:
                run.problem = f"{RESULTS_FILE} has {key}={record[key]!r}, expected {wanted!r}"
                return run
        key = _json_key(keyword)
        rejected = record_problem(record, path, key)
        if rejected:  # never replaced by the log's (rounded) number
            run.problem = rejected
            return run
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            run.value, run.source, run.record = float(value), json_path, record
            return run
        # no such metric in the record: the log may still have it (e.g. a custom keyword)
    log_path = osp.join(path, LOG_FILE)
    if not osp.isfile(log_path):
        run.problem = f"no {RESULTS_FILE} or {LOG_FILE} in the folder"
        return run
    value, problem = parse_log(log_path, keyword=keyword, signal=signal)
    run.value, run.problem = value, problem
    if value is not None:
        run.source = log_path
    return run


def _subdirs(directory: str) -> List[str]:
    """Non-hidden sub-folders, sorted (CoOp's ``listdir_nohidden``; files are ignored instead of failing)."""
    return sorted(osp.join(directory, name) for name in os.listdir(directory)
                  if not name.startswith(".") and osp.isdir(osp.join(directory, name)))


def _is_run_dir(path: str) -> bool:
    return osp.isfile(osp.join(path, RESULTS_FILE)) or osp.isfile(osp.join(path, LOG_FILE))


def collect_runs(directory: str, keyword: str = "accuracy", signal: str = "train",
                 log_only: bool = False) -> List[Run]:
    """Every sub-folder of ``directory`` as a run (``directory`` itself when it is a run folder with no subfolders)."""
    if not osp.isdir(directory):
        raise NoResultsError(f"no complete runs under {directory}: no such folder")
    subs = _subdirs(directory)
    if not subs and _is_run_dir(directory):
        subs = [directory]
    return [read_run(sub, keyword=keyword, signal=signal, log_only=log_only) for sub in subs]


# ------------------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------------------
def spread(values: Sequence[float], ci95: bool = False) -> float:
    """``np.std`` (population, as CoOp's parser), or the 95% CI half-width ``1.96 * std / sqrt(n)``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    std = float(np.std(values))
    return 1.96 * std / math.sqrt(values.size) if ci95 else std


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N), the base-to-new harmonic mean (0 when both are 0)."""
    return 2.0 * base * new / (base + new) if (base + new) else 0.0


@dataclass
class Summary:
    """The runs of one folder and their mean / spread (``spread`` is std, or the CI with ``ci95``)."""

    directory: str
    runs: List[Run]
    keyword: str = "accuracy"
    ci95: bool = False

    @property
    def complete(self) -> List[Run]:
        return [r for r in self.runs if r.complete]

    @property
    def missing(self) -> List[Run]:
        return [r for r in self.runs if not r.complete]

    @property
    def values(self) -> List[float]:
        return [r.value for r in self.complete]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def spread(self) -> float:
        return spread(self.values, self.ci95)


def summarize(directory: str, keyword: str = "accuracy", test_log: bool = False, ci95: bool = False,
              log_only: bool = False) -> Summary:
    """CoOp's ``parse_test_res`` on one folder of seed runs. Raises NoResultsError when nothing is complete."""
    signal = "test" if test_log else "train"
    summary = Summary(directory, collect_runs(directory, keyword, signal, log_only), keyword, ci95)
    if not summary.complete:
        raise NoResultsError(_nothing_message(directory, summary.runs))
    return summary


def _nothing_message(directory: str, runs: Sequence[Run]) -> str:
    if not runs:
        return f"no complete runs under {directory}: it holds no run folders"
    reasons = "\n".join(f"  {r.path}: {r.problem}" for r in runs)
    return f"no complete runs under {directory}:\n{reasons}"


def format_summary(summary: Summary, header: bool = True) -> str:
    """CoOp's printout: one ``file: ... accuracy: xx.xx%.`` line per run, then ``* accuracy: mean% +- std%``."""
    kw = _log_keyword(summary.keyword)
    lines = [f"Parsing files in {summary.directory}"] if header else []
    for run in summary.runs:
        if run.complete:
            lines.append(f"file: {run.source}. {kw}: {run.value:.2f}%.")
        else:
            lines.append(f"missing: {run.path} ({run.problem})")
    lines.append("===")
    lines.append(f"Summary of directory: {summary.directory}")
    n_done, n_missing = len(summary.complete), len(summary.missing)
    lines.append(f"* runs: {n_done} complete" + (f", {n_missing} missing (not averaged)" if n_missing else ""))
    lines.append(f"* {kw}: {summary.mean:.2f}% +- {summary.spread:.2f}%")
    lines.append("===")
    return "\n".join(lines)


def summarize_multi(directory: str, keyword: str = "accuracy", test_log: bool = False, ci95: bool = False,
                    log_only: bool = False):
    """``--multi-exp``: each sub-folder is an experiment of seed folders; returns (experiment summaries, overall).

    The overall line averages the experiments' means (spread over experiments), as CoOp's parser does.
    """
    if not osp.isdir(directory):
        raise NoResultsError(f"no complete runs under {directory}: no such folder")
    experiments, failed = [], []
    for sub in _subdirs(directory):
        try:
            experiments.append(summarize(sub, keyword, test_log, ci95, log_only))
        except NoResultsError as exc:
            failed.append((sub, str(exc)))
    if not experiments:
        detail = ("\n" + "\n".join(msg for _, msg in failed)) if failed else ": it holds no experiment folders"
        raise NoResultsError(f"no complete runs under {directory}{detail}")
    runs = [Run(path=e.directory, value=e.mean, source=e.directory) for e in experiments]
    runs += [Run(path=sub, problem="no complete runs") for sub, _ in failed]
    return experiments, Summary(directory, runs, keyword, ci95)


# ------------------------------------------------------------------------------------------------------------
# Walking an output tree
# ------------------------------------------------------------------------------------------------------------
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


def _resolve_protocol_root(root: str, protocol: str, markers: Sequence[str]) -> str:
    """``root`` itself or ``root/<protocol>``, whichever holds one of the ``markers`` folders."""
    for candidate in (root, osp.join(root, protocol)):
        if any(osp.isdir(osp.join(candidate, m)) for m in markers):
            return candidate
    if not osp.isdir(root):
        raise NoResultsError(f"no complete runs under {root}: no such folder")
    wanted = " and ".join(f"{m}/" for m in markers)
    raise NoResultsError(f"no complete runs under {root}: expected {wanted} (the output/{protocol} layout) there or "
                         f"in {osp.join(root, protocol)}")


def _shots_label(shots) -> Optional[str]:
    if shots is None:
        return None
    shots = str(shots)
    return shots if shots.startswith("shots_") else f"shots_{shots}"


def _shots_number(label: str) -> float:
    """K of a ``shots_<K>`` folder name (digits only); inf for any other name (sorted last, never a K)."""
    match = re.fullmatch(r"shots_(\d+)", label)
    return float(match.group(1)) if match else float("inf")


def _iter_cfg_dirs(split_dir: str, datasets=None, shots=None, trainer=None, cfg=None):
    """``(dataset, shots folder, trainer, cfg, folder)`` for every ``<split>/<ds>/shots_<K>/<T>/<cfg>`` that passes
    the filters (``datasets`` and ``shots`` are collections, ``trainer`` and ``cfg`` names; None keeps all)."""
    if not osp.isdir(split_dir):
        return
    for ds_dir in _subdirs(split_dir):
        ds = osp.basename(ds_dir)
        if datasets is not None and ds not in datasets:
            continue
        for shots_dir in _subdirs(ds_dir):
            shots_name = osp.basename(shots_dir)
            if not shots_name.startswith("shots_") or (shots is not None and shots_name not in shots):
                continue
            for t_dir in _subdirs(shots_dir):
                if trainer and osp.basename(t_dir) != trainer:
                    continue
                for cfg_dir in _subdirs(t_dir):
                    if cfg and osp.basename(cfg_dir) != cfg:
                        continue
                    yield ds, shots_name, osp.basename(t_dir), osp.basename(cfg_dir), cfg_dir


def is_zero_shot(trainer: str, cfg: str) -> bool:
    """Runs of a zero-shot trainer, or the sweep's ``--zero-shot`` folder (``<cfg>_zeroshot``) of any trainer."""
    return trainer in ZERO_SHOT_TRAINERS or cfg.endswith(ZERO_SHOT_SUFFIX)


def _run_eval_only(run: Run) -> Optional[bool]:
    """Whether a complete run was an evaluation only: results.json's ``eval_only``, else the log's argument dump."""
    if "eval_only" in run.record:
        return bool(run.record["eval_only"])
    if run.source and osp.basename(run.source) == LOG_FILE:
        try:
            with open(run.source, encoding="utf-8", errors="replace") as f:
                return _is_eval_only_log(f.read().splitlines())
        except OSError:
            return None
    return None


def _trained_check(trainer: str, cfg: str, phase: str) -> Optional[Callable[[Run], Optional[str]]]:
    """For a trainer that trains (not ``is_zero_shot``): a ``check`` keeping evaluation-only runs out of its
    training cells (``phase="train"``) and evaluations of no model out of its evaluation cells (``"eval"``)."""
    if is_zero_shot(trainer, cfg):
        return None
    if phase == "train":
        def check(run: Run) -> Optional[str]:
            if _run_eval_only(run):
                return (f"an evaluation-only run (eval_only: True; a zero-shot run?) in a training folder of "
                        f"{trainer}: not a trained result")
            return None
    else:
        def check(run: Run) -> Optional[str]:
            if "model_dir" in run.record and not run.record["model_dir"]:
                return f"evaluated no trained model (model_dir is empty; a zero-shot run?), not a {trainer} result"
            return None
    return check


def _both(*checks: Optional[Callable[[Run], Optional[str]]]) -> Optional[Callable[[Run], Optional[str]]]:
    """One check from several (the first reason wins); None when none is given."""
    checks = [c for c in checks if c is not None]
    if not checks:
        return None
    return lambda run: next((why for why in (c(run) for c in checks) if why), None)


def _read_cell(folder: str, seeds: Optional[Sequence[int]], expect: Dict[str, object], keyword: str, ci95: bool,
               log_only: bool, check: Optional[Callable[[Run], Optional[str]]] = None) -> Cell:
    """The ``seed<N>`` folders under ``folder`` as a Cell. With ``seeds``, exactly those (an absent one is missing).

    Other sub-folders (``seed1_old``, ``backup``) are no runs: they are listed in ``Cell.ignored``, never averaged.
    ``check(run)`` may return a reason that makes a complete run missing (e.g. a model trained elsewhere).
    """
    subs = _subdirs(folder) if osp.isdir(folder) else []
    seed_dirs = [d for d in subs if _SEED_RE.match(osp.basename(d))]
    ignored = [d for d in subs if not _SEED_RE.match(osp.basename(d))]
    if seeds is None:
        dirs = seed_dirs if osp.isdir(folder) else [folder]  # an absent folder is one missing entry
    else:
        by_seed = {}
        for d in seed_dirs:
            by_seed[int(_SEED_RE.match(osp.basename(d)).group(1))] = d
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


def _no_results(root: str, filters: Sequence[tuple], missing: Sequence[Run]) -> NoResultsError:
    what = ", ".join(f"{k}={v}" for k, v in filters if v)
    msg = f"no complete runs under {root}" + (f" ({what})" if what else "")
    return NoResultsError(msg + "".join(f"\n  {r.path}: {r.problem}" for r in list(missing)[:20]))


# Recipe groups: a trainer with per-dataset recipes (dasslite.sweep.RECIPES) trains each dataset with its own cfg.
# Without --cfg, the runs made with those defaults share one table (label PER_DATASET) so that they get an Average;
# runs made with any other cfg keep a table of their own.
PER_DATASET = "per-dataset recipes"


def recipe_group(trainer: str, dataset: str, cfg: str) -> str:
    """``PER_DATASET`` when ``cfg`` is the sweep's per-dataset default for (trainer, dataset), else ``cfg``."""
    from dasslite.sweep import RECIPES, default_cfg  # dasslite.sweep imports this module

    return PER_DATASET if trainer in RECIPES and cfg == default_cfg(trainer, dataset) else cfg


def _recipes_line(pairs: Iterable[tuple]) -> str:
    """``Recipes: ds1, ds2: cfgA; ds3: cfgB`` from ``(dataset, cfg)`` pairs."""
    by_cfg: Dict[str, List[str]] = {}
    for dataset, cfg in pairs:
        by_cfg.setdefault(cfg, []).append(dataset)
    return "Recipes: " + "; ".join(f"{', '.join(ds)}: {cfg}" for cfg, ds in by_cfg.items())


def _fmt(mean: float, sp: float) -> str:
    if math.isnan(mean):
        return "-"
    if math.isnan(sp):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {sp:.2f}"


def _num(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _dataset_sort_key(name: str):
    low = name.lower()
    return (0, PAPER_ORDER.index(low), "") if low in PAPER_ORDER else (1, 0, low)


# ------------------------------------------------------------------------------------------------------------
# Published numbers (dasslite/paper_results.json)
# ------------------------------------------------------------------------------------------------------------
PAPER_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "paper_results.json")


def load_paper(path: Optional[str] = None) -> dict:
    """The published numbers (``paper_results.json``): tables ``base2new`` (MoCoOp Table 1), ``dg``, ``topk``."""
    with open(path or PAPER_FILE, encoding="utf-8") as f:
        return json.load(f)


def paper_method(paper: dict, trainer: str) -> Optional[str]:
    """The paper's name for one of our trainers (ZeroshotCLIP -> CLIP; ZeroshotCLIP2, CoOp's prompt ensemble, is not
    the paper's single-template CLIP and has none), or None."""
    return paper.get("trainer_to_method", {}).get(trainer)


# ------------------------------------------------------------------------------------------------------------
# Base-to-new tables
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    dataset: str
    base: Cell
    new: Cell
    cfg: Optional[str] = None  # the recipe of this dataset's runs

    @property
    def has_both(self) -> bool:
        return self.base.n > 0 and self.new.n > 0

    @property
    def h(self) -> float:
        return harmonic_mean(self.base.mean, self.new.mean) if self.has_both else float("nan")

    @property
    def h_per_seed(self) -> Dict[str, float]:
        b, n = self.base.by_label, self.new.by_label
        return {k: harmonic_mean(b[k], n[k]) for k in b if k in n}

    @property
    def h_spread(self) -> float:
        return spread(list(self.h_per_seed.values()), self.base.ci95)

    @property
    def missing(self) -> List[Run]:
        return self.base.missing + self.new.missing

    @property
    def ignored(self) -> List[str]:
        return self.base.ignored + self.new.ignored


@dataclass
class Base2NewTable:
    """One (shots, trainer, cfg) group of a base-to-new tree: a row per dataset (cfg may be PER_DATASET)."""

    root: str
    shots: str  # the folder name, e.g. "shots_16" (KgCoOp: "shots_16_8.0")
    trainer: str
    cfg: str
    rows: List[Row]
    ci95: bool = False

    @property
    def average(self) -> Optional[dict]:
        """Mean of the per-dataset means over the datasets with both Base and New; H of the two averages."""
        usable = [r for r in self.rows if r.has_both]
        if len(self.rows) < 2 or not usable:
            return None
        base = float(np.mean([r.base.mean for r in usable]))
        new = float(np.mean([r.new.mean for r in usable]))
        return {"base": base, "new": new, "h": harmonic_mean(base, new), "n_datasets": len(usable),
                "of": len(self.rows), "datasets": [r.dataset for r in usable]}

    @property
    def title(self) -> str:
        spread_name = "95% CI" if self.ci95 else "std"
        return (f"Base-to-new: {self.trainer} / {self.cfg} / {self.shots.replace('_', ' ')} "
                f"(mean ± {spread_name} over seeds; H = harmonic mean of mean Base and mean New)")


def _seeds_cell(row: Row) -> str:
    return str(row.base.n) if row.base.n == row.new.n else f"{row.base.n}/{row.new.n}"


def _resolve_base2new_root(root: str) -> str:
    return _resolve_protocol_root(root, "base2new", ("train_base", "test_new"))


def collect_base2new(root: str, datasets: Optional[Iterable[str]] = None, trainer: Optional[str] = None,
                     cfg: Optional[str] = None, shots=None, seeds: Optional[Iterable[int]] = None,
                     keyword: str = "accuracy", ci95: bool = False, log_only: bool = False) -> List[Base2NewTable]:
    """Walk ``ROOT/{train_base,test_new}/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` into one table per (shots, T, cfg).

    Without ``cfg``, a trainer's per-dataset default recipes share one table (see ``recipe_group``).
    ``seeds`` restricts the runs to those seeds; a requested seed without a folder is listed as missing.
    Raises NoResultsError naming the folder when there is no complete run at all.
    """
    base_root = _resolve_base2new_root(root)
    want_ds = set(datasets) if datasets else None
    want_shots = _shots_label(shots)
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    # (shots, T, group) -> ds -> cfg
    found: Dict[tuple, Dict[str, str]] = {}
    for split in ("train_base", "test_new"):
        for ds, shots_name, t_name, cfg_name, _ in _iter_cfg_dirs(
                osp.join(base_root, split), want_ds, {want_shots} if want_shots else None, trainer, cfg):
            group = cfg_name if cfg else recipe_group(t_name, ds, cfg_name)
            found.setdefault((shots_name, t_name, group), {})[ds] = cfg_name
    # datasets asked for by name but absent entirely still get a row when the group is fixed
    if want_ds and trainer and cfg and want_shots:
        for ds in want_ds:
            found.setdefault((want_shots, trainer, cfg), {}).setdefault(ds, cfg)

    tables = []
    for (shots_name, t_name, group) in sorted(found):
        rows = []
        for ds in sorted(found[(shots_name, t_name, group)], key=_dataset_sort_key):
            cfg_name = found[(shots_name, t_name, group)][ds]
            cells = {sub: _read_cell(osp.join(base_root, split, ds, shots_name, t_name, cfg_name), want_seeds,
                                     {"subsample_classes": sub}, keyword, ci95, log_only,
                                     check=_trained_check(t_name, cfg_name, phase))
                     for split, sub, phase in (("train_base", "base", "train"), ("test_new", "new", "eval"))}
            rows.append(Row(ds, cells["base"], cells["new"], cfg_name))
        tables.append(Base2NewTable(base_root, shots_name, t_name, group, rows, ci95))
    if not any(r.base.n or r.new.n for t in tables for r in t.rows):
        raise _no_results(base_root, (("dataset", ",".join(sorted(want_ds)) if want_ds else None),
                                      ("trainer", trainer), ("cfg", cfg), ("shots", want_shots),
                                      ("seeds", want_seeds)),
                          [r for t in tables for row in t.rows for r in row.missing])
    return tables


HEADERS = ["Dataset", "Base", "New", "H", "Seeds"]
PAPER_HEADERS = ["Paper Base", "Paper New", "Paper H"]
UNRELIABLE_MARK = "*"
SUBSET_MARK = "†"


def paper_base2new_rows(table: Base2NewTable, paper: dict):
    """Published Base / New / H beside each row of ``table`` (and its Average): ``(cells per row, notes)``.

    The Average row gets the paper's printed average when our average covers every dataset of the paper's table;
    otherwise the mean of the paper's rows over the datasets of our average (marked †, H of those means). A printed
    average flagged ``unreliable`` in the JSON is shown as printed, marked *, with its note.
    """
    section = paper.get("base2new", {})
    # --zero-shot evaluations of a trainer that trains are not that method's published (trained) numbers
    zero_shot_of_trained = table.trainer not in ZERO_SHOT_TRAINERS and table.cfg.endswith(ZERO_SHOT_SUFFIX)
    method = None if zero_shot_of_trained else paper_method(paper, table.trainer)
    entry = section.get("methods", {}).get(method) if method else None
    n_rows = len(table.rows) + (1 if table.average else 0)
    if entry is None:
        what = f"{table.trainer} evaluated zero-shot ({table.cfg})" if zero_shot_of_trained else table.trainer
        note = f"{section.get('source', 'the paper')} has no row for {what}"
        return [["", "", ""] for _ in range(n_rows)], [note]
    per_ds = entry.get("datasets", {})
    cells = []
    for row in table.rows:
        p = per_ds.get(row.dataset)
        cells.append([f"{p['base']:.2f}", f"{p['new']:.2f}", f"{p['h']:.2f}"] if p else ["", "", ""])
    notes = [f"Paper: {section.get('source', '')}, {method} ({section.get('setting', '')})."]
    avg = table.average
    if avg:
        ours = set(avg["datasets"])
        printed = entry.get("average")
        if printed and set(per_ds) <= ours:
            mark = UNRELIABLE_MARK if printed.get("unreliable") else ""
            cells.append([f"{printed[k]:.2f}{mark}" for k in ("base", "new", "h")])
            if mark:
                notes.append(f"{UNRELIABLE_MARK} {method}'s printed average: {printed.get('note', 'unreliable')}")
        else:
            shared = [d for d in avg["datasets"] if d in per_ds]
            if shared:
                b = float(np.mean([per_ds[d]["base"] for d in shared]))
                n = float(np.mean([per_ds[d]["new"] for d in shared]))
                cells.append([f"{b:.2f}{SUBSET_MARK}", f"{n:.2f}{SUBSET_MARK}",
                              f"{harmonic_mean(b, n):.2f}{SUBSET_MARK}"])
                notes.append(f"{SUBSET_MARK} mean of the paper's rows for the {len(shared)} dataset(s) of this "
                             f"average ({', '.join(shared)}); H of those means")
            else:
                cells.append(["", "", ""])
    return cells, notes


def table_rows(table: Base2NewTable, paper: Optional[dict] = None) -> List[List[str]]:
    rows = [[r.dataset, _fmt(r.base.mean, r.base.spread), _fmt(r.new.mean, r.new.spread),
             _fmt(r.h, r.h_spread), _seeds_cell(r)] for r in table.rows]
    avg = table.average
    if avg:
        name = "Average" if avg["n_datasets"] == avg["of"] else f"Average ({avg['n_datasets']}/{avg['of']} datasets)"
        rows.append([name, f"{avg['base']:.2f}", f"{avg['new']:.2f}", f"{avg['h']:.2f}", ""])
    if paper is not None:
        cells, _ = paper_base2new_rows(table, paper)
        rows = [r + c for r, c in zip(rows, cells)]
    return rows


def _missing_lines(runs: Sequence[Run], markdown: bool) -> List[str]:
    if not runs:
        return []
    return ["", f"Missing runs (not averaged): {len(runs)}"] + [
        f"{'- ' if markdown else '  '}{r.path}: {r.problem}" for r in runs]


def _ignored_lines(folders: Sequence[str], markdown: bool) -> List[str]:
    if not folders:
        return []
    return ["", f"Ignored folders (not seed<N> runs, not averaged): {len(folders)}"] + [
        f"{'- ' if markdown else '  '}{d}" for d in folders]


def format_base2new(tables: Sequence[Base2NewTable], tablefmt: str = "github", markdown: bool = False,
                    paper: Optional[dict] = None) -> str:
    """The tables as text (tabulate); ``markdown`` adds ``###`` headings; ``paper`` adds the published columns."""
    from tabulate import tabulate

    blocks = []
    for table in tables:
        lines = [("### " if markdown else "") + table.title, ""]
        headers = HEADERS + (PAPER_HEADERS if paper is not None else [])
        lines.append(tabulate(table_rows(table, paper), headers=headers, tablefmt=tablefmt, disable_numparse=True))
        if table.cfg == PER_DATASET:
            lines += ["", _recipes_line((r.dataset, r.cfg) for r in table.rows)]
        if paper is not None:
            lines += [""] + paper_base2new_rows(table, paper)[1]
        lines += _missing_lines([r for row in table.rows for r in row.missing], markdown)
        lines += _ignored_lines([d for row in table.rows for d in row.ignored], markdown)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _write_text(path: str, text: str) -> str:
    """``text`` into ``path`` atomically (``dasslite.utils.io``; importing it needs no torch)."""
    from dasslite.utils.io import write_text_atomic

    return write_text_atomic(path, text)


def _csv_writer():
    """A csv.writer into memory and the buffer it writes to (tables are written to disk atomically, whole)."""
    buffer = io.StringIO(newline="")
    return csv.writer(buffer), buffer


def write_csv(tables: Sequence[Base2NewTable], path: str, paper: Optional[dict] = None) -> str:
    """Numbers, not strings: one line per dataset (and Average) per table; ``paper`` adds paper_* columns."""
    writer, buffer = _csv_writer()
    writer.writerow(["shots", "trainer", "cfg", "dataset", "base_mean", "base_spread", "new_mean", "new_spread",
                     "h", "h_spread", "n_base", "n_new", "spread"]
                    + (["paper_base", "paper_new", "paper_h"] if paper is not None else []))
    for t in tables:
        kind = "ci95" if t.ci95 else "std"
        extra = paper_base2new_rows(t, paper)[0] if paper is not None else None
        lines = [[t.shots, t.trainer, r.cfg or t.cfg, r.dataset, _num(r.base.mean), _num(r.base.spread),
                  _num(r.new.mean), _num(r.new.spread), _num(r.h), _num(r.h_spread), r.base.n, r.new.n, kind]
                 for r in t.rows]
        avg = t.average
        if avg:
            lines.append([t.shots, t.trainer, t.cfg, "Average", _num(avg["base"]), "", _num(avg["new"]), "",
                          _num(avg["h"]), "", "", "", kind])
        for i, line in enumerate(lines):
            if extra is not None:  # numbers only: the marks are explained in the text tables
                line += [c.rstrip(UNRELIABLE_MARK + SUBSET_MARK) for c in extra[i]]
            writer.writerow(line)
    return _write_text(path, buffer.getvalue())


def write_markdown(tables: Sequence[Base2NewTable], path: str, paper: Optional[dict] = None) -> str:
    return _write_text(path, format_base2new(tables, tablefmt="github", markdown=True, paper=paper) + "\n")


# ------------------------------------------------------------------------------------------------------------
# Few-shot and transfer (xd / dg) tables: rows x columns of cells
# ------------------------------------------------------------------------------------------------------------
@dataclass
class GridRow:
    """A row of cells keyed by column; a published row has ``published`` numbers instead of cells."""

    label: str
    cells: Dict[str, Cell] = field(default_factory=dict)
    trainer: str = ""
    cfg: Optional[str] = None
    published: Optional[Dict[str, float]] = None  # paper rows only

    def mean(self, column: str) -> float:
        if self.published is not None:
            return self.published.get(column, float("nan"))
        cell = self.cells.get(column)
        return cell.mean if cell else float("nan")

    @property
    def missing(self) -> List[Run]:
        return [r for c in self.cells.values() for r in c.missing]

    @property
    def ignored(self) -> List[str]:
        return [d for c in self.cells.values() for d in c.ignored]


@dataclass
class GridTable:
    """Few-shot (rows: datasets + an Average row; columns: shots) or xd / dg (rows: trainer / cfg; columns: the
    source, each target and the target average)."""

    protocol: str  # "fewshot" | "xd" | "dg"
    root: str
    trainer: str  # fewshot: the trainer; xd/dg: "" (one row per trainer)
    cfg: str  # fewshot: cfg or PER_DATASET; xd/dg: ""
    shots: str  # xd/dg: the source's shots folder; fewshot: ""
    source: str  # xd/dg only
    columns: List[str]  # fewshot: shots folders; xd/dg: the source then the targets
    rows: List[GridRow]
    ci95: bool = False
    notes: List[str] = field(default_factory=list)

    @property
    def targets(self) -> List[str]:
        return self.columns[1:] if self.protocol != "fewshot" else []

    @property
    def title(self) -> str:
        sp = "95% CI" if self.ci95 else "std"
        if self.protocol == "fewshot":
            return f"Few-shot (all classes): {self.trainer} / {self.cfg} (accuracy, mean ± {sp} over seeds)"
        what = "Cross-dataset" if self.protocol == "xd" else "Domain generalisation"
        return (f"{what}: trained on {self.source} ({self.shots.replace('_', ' ')}), evaluated on each target "
                f"(accuracy, mean ± {sp} over seeds; Target avg = mean of the target means)")

    def column_average(self, column: str) -> tuple:
        """Fewshot Average row: (mean of the dataset means that have this column, how many, of how many)."""
        vals = [r.mean(column) for r in self.rows if r.published is None and not math.isnan(r.mean(column))]
        n_rows = sum(1 for r in self.rows if r.published is None)
        return (float(np.mean(vals)) if vals else float("nan")), len(vals), n_rows

    def target_average(self, row: GridRow) -> tuple:
        """xd/dg Target avg: (mean of the row's target means that exist, how many, of how many targets)."""
        vals = [row.mean(c) for c in self.targets if not math.isnan(row.mean(c))]
        return (float(np.mean(vals)) if vals else float("nan")), len(vals), len(self.targets)


def _partial(mean: float, k: int, n: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if k == n else f"{mean:.2f} ({k}/{n})"


def _seed_counts(row: GridRow) -> str:
    counts = sorted({c.n for c in row.cells.values()})
    if row.published is not None:
        return "paper"
    if not counts:
        return "0"
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _column_header(table: GridTable, column: str) -> str:
    if table.protocol == "fewshot":
        k = column[len("shots_"):]
        return f"{k} shot" + ("" if k == "1" else "s")
    return f"{column} (source)" if column == table.source else column


def grid_headers(table: GridTable) -> List[str]:
    first = "Dataset" if table.protocol == "fewshot" else "Method"
    extra = [] if table.protocol == "fewshot" else ["Target avg"]
    return [first] + [_column_header(table, c) for c in table.columns] + extra + ["Seeds"]


def grid_rows(table: GridTable) -> List[List[str]]:
    out = []
    for row in table.rows:
        if row.published is not None:
            cells = [f"{row.published[c]:.2f}" if c in row.published else "" for c in table.columns]
        else:
            cells = [_fmt(row.cells[c].mean, row.cells[c].spread) if c in row.cells else "-" for c in table.columns]
        if table.protocol != "fewshot":
            cells.append(_partial(*table.target_average(row)))
        out.append([row.label] + cells + [_seed_counts(row)])
    if table.protocol == "fewshot" and len(table.rows) > 1:
        out.append(["Average"] + [_partial(*table.column_average(c)) for c in table.columns] + [""])
    return out


def format_grids(tables: Sequence[GridTable], tablefmt: str = "github", markdown: bool = False) -> str:
    """Few-shot / xd / dg tables as text (tabulate); ``markdown`` adds ``###`` headings."""
    from tabulate import tabulate

    blocks = []
    for table in tables:
        lines = [("### " if markdown else "") + table.title, ""]
        lines.append(tabulate(grid_rows(table), headers=grid_headers(table), tablefmt=tablefmt,
                              disable_numparse=True))
        if table.protocol == "fewshot" and table.cfg == PER_DATASET:
            lines += ["", _recipes_line((r.label, r.cfg) for r in table.rows)]
        if table.notes:
            lines += [""] + table.notes
        lines += _missing_lines([r for row in table.rows for r in row.missing], markdown)
        lines += _ignored_lines([d for row in table.rows for d in row.ignored], markdown)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


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
    want_shots = {_shots_label(k) for k in shots} if shots else None
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    found: Dict[tuple, Dict[str, Dict[str, str]]] = {}  # (T, group) -> ds -> shots folder -> cfg
    for ds, shots_name, t_name, cfg_name, _ in _iter_cfg_dirs(root, want_ds, want_shots, trainer, cfg):
        if not math.isfinite(_shots_number(shots_name)):
            continue  # not a shots_<K> folder
        group = cfg_name if cfg else recipe_group(t_name, ds, cfg_name)
        found.setdefault((t_name, group), {}).setdefault(ds, {})[shots_name] = cfg_name
    if want_ds and want_shots and trainer and cfg:  # asked for by name: absent runs are listed as missing
        for ds in want_ds:
            for k in want_shots:
                found.setdefault((trainer, cfg), {}).setdefault(ds, {}).setdefault(k, cfg)
    tables = []
    for (t_name, group), per_ds in sorted(found.items()):
        columns = sorted({k for shots_map in per_ds.values() for k in shots_map}, key=_shots_number)
        rows = []
        for ds in sorted(per_ds, key=_dataset_sort_key):
            cells = {k: _read_cell(osp.join(root, ds, k, t_name, c), want_seeds,
                                   {"subsample_classes": "all", "num_shots": int(_shots_number(k))},
                                   keyword, ci95, log_only, check=_trained_check(t_name, c, "train"))
                     for k, c in per_ds[ds].items()}
            rows.append(GridRow(ds, cells, t_name, next(iter(per_ds[ds].values()))))
        tables.append(GridTable("fewshot", root, t_name, group, "", "", columns, rows, ci95))
    if not any(c.n for t in tables for r in t.rows for c in r.cells.values()):
        raise _no_results(root, (("dataset", ",".join(sorted(want_ds)) if want_ds else None), ("trainer", trainer),
                                 ("cfg", cfg), ("seeds", want_seeds)),
                          [r for t in tables for row in t.rows for r in row.missing])
    return tables


def trained_on(model_dir) -> Optional[str]:
    """The source dataset of an xd/dg model dir (``.../train/<source>/shots_<K>/<T>/<cfg>/seed<S>``), else None."""
    if not model_dir:
        return None
    parts = osp.normpath(str(model_dir)).replace("\\", "/").split("/")
    return parts[-5] if len(parts) >= 6 and parts[-6] == "train" else None


def _paper_transfer_row(paper: dict, protocol: str, trainer: str, source: str, columns: Sequence[str]):
    """A published row for ``trainer`` in the ``protocol`` table of the paper, or ``(None, note)``."""
    section = paper.get(protocol)
    if not section:
        return None, f"The paper has no {protocol} table: nothing to put beside these rows."
    if section.get("source_dataset") not in (None, source):
        return None, f"{section['source']} trains on {section['source_dataset']}, not {source}."
    method = paper_method(paper, trainer)
    numbers = section.get("methods", {}).get(method) if method else None
    if numbers is None:
        return None, f"{section['source']} has no row for {trainer}."
    shown = {c: numbers[c] for c in columns if c in numbers}
    return GridRow(f"{method} (paper)", trainer=trainer, cfg="paper", published=shown), None


TRANSFER_FOLDER = "transfer"  # <output>/transfer/train/<source>/...: the source runs xd and dg share


def transfer_train_roots(protocol_root: str) -> List[str]:
    """Where xd/dg source runs live: ``<output>/<xd|dg>/train`` (the layout before the shared folder, still read and
    preferred where a run is there) and ``<output>/transfer/train`` (one source run serves both protocols)."""
    return [osp.join(protocol_root, "train"),
            osp.join(osp.dirname(osp.abspath(protocol_root)), TRANSFER_FOLDER, "train")]


def collect_transfer(root: str, protocol: str, source: Optional[str] = None, targets: Optional[Iterable[str]] = None,
                     trainer: Optional[str] = None, cfg: Optional[str] = None, shots=None,
                     seeds: Optional[Iterable[int]] = None, keyword: str = "accuracy", ci95: bool = False,
                     log_only: bool = False, paper: Optional[dict] = None) -> List[GridTable]:
    """Walk the source runs (``output/transfer/train/<source>/...``, or ``ROOT/train/...`` in the older layout) and
    ``ROOT/test/<target>/...`` (ROOT = output/xd or output/dg) into one table per (source, shots): a row per
    (trainer, cfg) trained on that source, a column for the source and each target.

    A target run counts only if its results.json (when there is one) loaded a model trained on that source (or
    none: zero-shot). ``paper`` adds the published row of each trainer (``paper_results.json``).
    """
    proot = _resolve_protocol_root(root, protocol, ("train", "test"))
    test_root = osp.join(proot, "test")
    want_shots = {_shots_label(shots)} if shots is not None else None
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    groups: Dict[tuple, List[tuple]] = {}  # (source, shots) -> [(T, cfg)]
    train_roots: Dict[tuple, str] = {}  # (source, shots, T, cfg) -> the train folder holding it
    evaluated = {(t_name, cfg_name) for _, _, t_name, cfg_name, _ in _iter_cfg_dirs(test_root, None, want_shots,
                                                                                     trainer, cfg)}
    for train_root in transfer_train_roots(proot):
        shared = not train_root.startswith(proot + os.sep)
        for src, shots_name, t_name, cfg_name, _ in _iter_cfg_dirs(train_root, {source} if source else None,
                                                                    want_shots, trainer, cfg):
            if (src, shots_name, t_name, cfg_name) in train_roots:
                continue  # the protocol's own (older layout) folder wins over the shared one
            if shared and (t_name, cfg_name) not in evaluated and not (trainer and cfg):
                continue  # a source model only the other transfer protocol has evaluated so far
            train_roots[(src, shots_name, t_name, cfg_name)] = train_root
            groups.setdefault((src, shots_name), []).append((t_name, cfg_name))
    if source and trainer and cfg and want_shots and not groups:
        groups[(source, next(iter(want_shots)))] = [(trainer, cfg)]
    tables = []
    for (src, shots_name), members in sorted(groups.items()):
        if targets:
            cols = [t for t in dict.fromkeys(targets) if t != src]
        else:
            cols = sorted({ds for ds, _, t_name, cfg_name, _ in _iter_cfg_dirs(test_root, None, {shots_name})
                           if ds != src and (t_name, cfg_name) in members}, key=_dataset_sort_key)
        k = int(_shots_number(shots_name)) if math.isfinite(_shots_number(shots_name)) else None
        expect: Dict[str, object] = {"subsample_classes": "all"}
        if k is not None:
            expect["num_shots"] = k

        def from_source(run: Run, src=src) -> Optional[str]:
            got = trained_on(run.record.get("model_dir"))
            return None if got in (None, src) else f"evaluated a model trained on {got}, not {src}"

        by_trainer: Dict[str, List[str]] = {}
        for t_name, cfg_name in sorted(members):
            by_trainer.setdefault(t_name, []).append(cfg_name)
        rows, notes = [], []
        for t_name, cfg_names in by_trainer.items():
            for cfg_name in cfg_names:
                train_root = train_roots.get((src, shots_name, t_name, cfg_name), osp.join(proot, "train"))
                cells = {src: _read_cell(osp.join(train_root, src, shots_name, t_name, cfg_name), want_seeds, expect,
                                         keyword, ci95, log_only, check=_trained_check(t_name, cfg_name, "train"))}
                for target in cols:
                    cells[target] = _read_cell(osp.join(test_root, target, shots_name, t_name, cfg_name),
                                               want_seeds, expect, keyword, ci95, log_only,
                                               check=_both(from_source, _trained_check(t_name, cfg_name, "eval")))
                rows.append(GridRow(f"{t_name} / {cfg_name}", cells, t_name, cfg_name))
            trained = [c for c in cfg_names if not (t_name not in ZERO_SHOT_TRAINERS and c.endswith(ZERO_SHOT_SUFFIX))]
            if paper is not None and trained:  # the published row goes after that trainer's rows
                prow, note = _paper_transfer_row(paper, protocol, t_name, src, [src] + cols)
                if prow is not None:
                    rows.append(prow)
                elif note not in notes:
                    notes.append(note)
        if any(r.published is not None for r in rows):
            notes.insert(0, f"Paper rows: {paper[protocol]['source']} ({paper[protocol].get('setting', '')}).")
        tables.append(GridTable(protocol, proot, "", "", shots_name, src, [src] + cols, rows, ci95, notes))
    if not any(c.n for t in tables for r in t.rows for c in r.cells.values()):
        raise _no_results(proot, (("source", source), ("trainer", trainer), ("cfg", cfg),
                                  ("shots", next(iter(want_shots)) if want_shots else None), ("seeds", want_seeds)),
                          [r for t in tables for row in t.rows for r in row.missing])
    return tables


def write_grid_csv(tables: Sequence[GridTable], path: str) -> str:
    """Long format, numbers only: one line per cell (and per Average / Target avg)."""
    writer, buffer = _csv_writer()
    writer.writerow(["protocol", "source", "shots", "trainer", "cfg", "row", "column", "mean", "spread", "n",
                     "spread_kind"])
    for t in tables:
        kind = "ci95" if t.ci95 else "std"
        for row in t.rows:
            for c in t.columns:
                shots = c if t.protocol == "fewshot" else t.shots
                if row.published is not None:
                    if c in row.published:
                        writer.writerow([t.protocol, t.source, shots, row.trainer, "paper", row.label, c,
                                         _num(row.published[c]), "", "", ""])
                elif c in row.cells:
                    cell = row.cells[c]
                    writer.writerow([t.protocol, t.source, shots, row.trainer, row.cfg, row.label, c,
                                     _num(cell.mean), _num(cell.spread), cell.n, kind])
            if t.protocol != "fewshot":
                mean, k, n = t.target_average(row)
                writer.writerow([t.protocol, t.source, t.shots, row.trainer, row.cfg or "", row.label,
                                 "target_avg", _num(mean), "", f"{k}/{n}", ""])
        if t.protocol == "fewshot":
            for c in t.columns:
                mean, k, n = t.column_average(c)
                writer.writerow([t.protocol, "", c, t.trainer, t.cfg, "Average", c, _num(mean), "", f"{k}/{n}",
                                 ""])
    return _write_text(path, buffer.getvalue())


def write_grid_markdown(tables: Sequence[GridTable], path: str) -> str:
    return _write_text(path, format_grids(tables, tablefmt="github", markdown=True) + "\n")


# ------------------------------------------------------------------------------------------------------------
# Few-shot curves (PNG, the MoCoOp paper's Figure 3)
# ------------------------------------------------------------------------------------------------------------
class PlotUnavailableError(RuntimeError):
    """matplotlib (the optional ``plots`` extra) is not installed, so no figure can be drawn."""


AVERAGE_PANEL = "Average"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


@dataclass
class Curve:
    """One line of the few-shot figure: a (trainer, cfg) table; ``points[panel][K] = (mean, spread)``."""

    label: str
    points: Dict[str, Dict[int, tuple]] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return sum(len(p) for p in self.points.values())


def _plot_shots(column: str) -> Optional[int]:
    """K of a ``shots_<K>`` column (K >= 1, placeable on a log axis), else None."""
    k = _shots_number(column)
    return int(k) if math.isfinite(k) and k > 0 else None


def _curve_label(table: GridTable, tables: Sequence[GridTable]) -> str:
    shared = sum(1 for t in tables if t.trainer == table.trainer) > 1
    return f"{table.trainer} ({table.cfg})" if shared else table.trainer


def fewshot_curves(tables: Sequence[GridTable], root: Optional[str] = None):
    """The numbers behind the few-shot figure: ``(shots, panels, curves)``.

    ``shots``: the sorted shot counts of all tables; ``panels``: the datasets (papers' order), then ``Average`` when
    there are two or more; ``curves``: one per table with a point wherever a cell has a complete run (mean, spread
    over seeds). A line's Average at K is the mean of its dataset means and exists only when the line has all
    datasets of the figure at K (no spread: the seeds of different datasets are not paired).
    Raises NoResultsError naming ``root`` (else the tables' roots) when there is no point to draw.
    """
    tables = list(tables)
    bad = [t.protocol for t in tables if t.protocol != "fewshot"]
    if bad:
        raise ValueError(f"few-shot curves need fewshot tables, got {bad[0]} tables")
    where = root or ", ".join(dict.fromkeys(t.root for t in tables))
    shots = sorted({k for t in tables for c in t.columns for k in [_plot_shots(c)] if k is not None})
    datasets = sorted({r.label for t in tables for r in t.rows if r.published is None}, key=_dataset_sort_key)
    curves = []
    for table in tables:
        curve = Curve(_curve_label(table, tables))
        for row in table.rows:
            if row.published is not None:
                continue
            for column, cell in row.cells.items():
                k = _plot_shots(column)
                if k is not None and cell.n:
                    curve.points.setdefault(row.label, {})[k] = (cell.mean, cell.spread)
        if len(datasets) > 1:
            average = {k: (float(np.mean([curve.points[d][k][0] for d in datasets])), float("nan"))
                       for k in shots if all(k in curve.points.get(d, {}) for d in datasets)}
            if average:
                curve.points[AVERAGE_PANEL] = average
        if curve.n_points:
            curves.append(curve)
    if not curves:
        if not tables:
            raise NoResultsError(f"nothing to plot under {where}: no few-shot tables" if where
                                 else "nothing to plot: no few-shot tables given")
        raise NoResultsError(f"nothing to plot under {where}: no complete run in a shots_<K> folder (K >= 1)")
    panels = datasets + ([AVERAGE_PANEL] if len(datasets) > 1 else [])
    return shots, panels, curves


def fewshot_plot_png(tables: Sequence[GridTable], title: Optional[str] = None, root: Optional[str] = None,
                     ylabel: str = "accuracy (%)") -> bytes:
    """The few-shot figure as PNG bytes (matplotlib's Agg canvas, no pyplot: no global backend, no display)."""
    shots, panels, curves = fewshot_curves(tables, root)
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullLocator
    except ImportError:
        raise PlotUnavailableError("matplotlib is not installed (pip install 'dasslite-moe-prompt[plots]'): "
                                   "cannot draw the few-shot plot") from None
    kinds = {t.ci95 for t in tables}
    spread_name = "95% CI" if kinds == {True} else "std" if kinds == {False} else "std or 95% CI"
    if title is None:
        title = f"Few-shot {ylabel.replace(' (%)', '')} (all classes); error bars: ± {spread_name} over seeds"
        if AVERAGE_PANEL in panels:
            title += (f"\nAverage: mean of the {len(panels) - 1} dataset means, drawn only at the shot counts "
                      f"where a line has all {len(panels) - 1} datasets")
    n = len(panels)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.1 * ncols, 2.6 * nrows + 1.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    colors = matplotlib.colormaps["tab10"].colors
    handles: Dict[str, object] = {}
    x = np.asarray(shots, dtype=float)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for j, curve in enumerate(curves):
            points = curve.points.get(panel)
            if not points:
                continue
            # NaN where a point is missing: matplotlib breaks the line there instead of joining its neighbours
            y = np.array([points[k][0] if k in points else np.nan for k in shots])
            err = np.array([points[k][1] if k in points else np.nan for k in shots])
            err = np.where(np.isfinite(err), err, 0.0)
            drawn = ax.errorbar(x, y, yerr=err if err.any() else None, color=colors[j % len(colors)],
                                marker=_MARKERS[j % len(_MARKERS)], markersize=4, linewidth=1.4, capsize=2.5,
                                elinewidth=0.9, label=curve.label)
            handles.setdefault(curve.label, drawn)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x)
        ax.set_xticklabels([str(k) for k in shots])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(x[0] / 1.4, x[-1] * 1.4)
        ax.grid(alpha=0.3)
        ax.set_title(panel if panel != AVERAGE_PANEL else f"Average ({n - 1} datasets)", fontsize=10)
        ax.tick_params(labelsize=8)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if i + ncols >= n:  # nothing below it
            ax.set_xlabel("shots per class", fontsize=9)
    labels = [c.label for c in curves if c.label in handles]
    fig.legend([handles[label] for label in labels], labels, loc="outside lower center",
               ncols=min(len(labels), 4), frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_fewshot(tables, path: str, title: Optional[str] = None, root: Optional[str] = None,
                 ylabel: str = "accuracy (%)") -> str:
    """Draw the few-shot curves of ``tables`` (from ``collect_fewshot``; or a ROOT folder, collected with the
    defaults) into the PNG ``path``, written atomically; returns ``path``.

    Raises NoResultsError naming the root when there is nothing to plot, PlotUnavailableError without matplotlib.
    """
    if isinstance(tables, (str, os.PathLike)):
        root = os.fspath(tables)
        tables = collect_fewshot(root)
    png = fewshot_plot_png(list(tables), title=title, root=root, ylabel=ylabel)
    from dasslite.utils.io import write_bytes_atomic

    return write_bytes_atomic(path, png)


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------
def _add_summarize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="folder whose sub-folders are runs (seeds), or experiments with --multi-exp")
    p.add_argument("--test-log", "--test_log", dest="test_log", action="store_true",
                   help="evaluation logs: the end signal is '=> result' instead of 'Finish training'")
    p.add_argument("--multi-exp", "--multi_exp", dest="multi_exp", action="store_true",
                   help="each sub-folder is an experiment holding seed folders")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--keyword", default="accuracy", help="metric in '* <keyword>: X%%' (accuracy, error, macro_f1)")
    p.add_argument("--log-only", action="store_true", help="ignore results.json, parse log.txt only (as CoOp)")


def _add_table_args(p: argparse.ArgumentParser, protocol: str) -> None:
    p.add_argument("root", nargs="?", default=osp.join("output", protocol),
                   help=f"output/{protocol} (or output); default: %(default)s")
    p.add_argument("--trainer", default=None)
    p.add_argument("--cfg", default=None, help="only this recipe (default: all; a trainer's per-dataset default "
                                               "recipes share one table)")
    p.add_argument("--seeds", nargs="+", default=None,
                   help="only these seeds (others are ignored); '1 2' or '1,2'")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--keyword", default="accuracy")
    p.add_argument("--log-only", action="store_true", help="ignore results.json, parse log.txt only")
    p.add_argument("--format", default="github", choices=["github", "plain", "simple", "grid", "pipe"],
                   help="tabulate table format (default: github)")
    p.add_argument("--csv", default=None, help="also write the numbers to this CSV file")
    p.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    if protocol in ("base2new", "xd", "dg"):
        p.add_argument("--paper", action="store_true",
                       help="put the published numbers beside ours (dasslite/paper_results.json)")
        p.add_argument("--paper-file", default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_summarize_args(sub.add_parser("summarize", help="mean ± std over the runs in a folder (parse_test_res)"))
    b = sub.add_parser("base2new", help="Base / New / H table of an output/base2new tree")
    _add_table_args(b, "base2new")
    b.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    b.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    f = sub.add_parser("fewshot", help="few-shot curves (a column per shot count) of an output/fewshot tree")
    _add_table_args(f, "fewshot")
    f.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    f.add_argument("--shots", nargs="+", default=None, help="only these shot counts")
    f.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw the few-shot curves (a panel per dataset and an Average panel) into this PNG")
    for name, what in (("xd", "cross-dataset"), ("dg", "domain generalisation")):
        t = sub.add_parser(name, help=f"{what} table (source and targets) of an output/{name} tree")
        _add_table_args(t, name)
        t.add_argument("--source", default=None, help="only this training dataset (default: every one)")
        t.add_argument("--targets", nargs="+", default=None, help="these target columns (default: all found)")
        t.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    sub.add_parser("osr", add_help=False, help="open-set tables and ROC / OSCR curves of an output/osr tree "
                                               "(dasslite.results_osr; python -m dasslite.results osr -h)")
    return parser


TABLE_COMMANDS = ("base2new", "fewshot", "xd", "dg")


def parse_int_list(values: Sequence[str], what: str, minimum: int) -> List[int]:
    """``["1", "2,3"]`` or ``["1 2"]`` -> ``[1, 2, 3]`` (duplicates dropped); ValueError naming ``what`` and the
    bad value otherwise. The sweep parses its --seeds / --shots with it too."""
    numbers: List[int] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                numbers.append(int(part))
            except ValueError:
                raise ValueError(f"not a {what}: {part!r}") from None
    if not numbers:
        raise ValueError(f"no {what}s given")
    if any(n < minimum for n in numbers):
        raise ValueError(f"{what}s must be >= {minimum}, got {numbers}")
    return list(dict.fromkeys(numbers))


def parse_seeds(values: Sequence[str]) -> List[int]:
    """The --seeds of the table commands (see ``parse_int_list``)."""
    try:
        return parse_int_list(values, "seed", 0)
    except ValueError as exc:
        raise ValueError(f"--seeds: {exc}") from None


def _table_command(args) -> None:
    paper = load_paper(args.paper_file) if getattr(args, "paper", False) else None
    common = dict(trainer=args.trainer, cfg=args.cfg, seeds=args.seeds, keyword=args.keyword, ci95=args.ci95,
                  log_only=args.log_only)
    if args.command == "base2new":
        tables = collect_base2new(args.root, args.dataset, shots=args.shots, **common)
        print(format_base2new(tables, tablefmt=args.format, paper=paper))
        written = [(args.csv, write_csv, "CSV"), (args.markdown, write_markdown, "Markdown")]
        for path, writer, what in written:
            if path:
                print(f"{what} written to {writer(tables, path, paper=paper)}")
        return
    if args.command == "fewshot":
        tables = collect_fewshot(args.root, args.dataset, shots=args.shots, **common)
    else:
        tables = collect_transfer(args.root, args.command, source=args.source, targets=args.targets,
                                  shots=args.shots, paper=paper, **common)
    print(format_grids(tables, tablefmt=args.format))
    for path, writer, what in ((args.csv, write_grid_csv, "CSV"), (args.markdown, write_grid_markdown, "Markdown")):
        if path:
            print(f"{what} written to {writer(tables, path)}")
    if getattr(args, "plot", None):
        ylabel = "accuracy (%)" if args.keyword == "accuracy" else f"{args.keyword} (%)"
        print(f"Plot written to {plot_fewshot(tables, args.plot, root=args.root, ylabel=ylabel)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":  # methods side by side, paper-ready (dasslite.compare)
        from dasslite import compare

        return compare.main(argv[1:])
    if argv and argv[0] == "osr":  # open-set tables and curves: dasslite.results_osr, which builds on this module
        from dasslite import results_osr
        return results_osr.main(argv[1:])
    if argv and argv[0] not in ("summarize", *TABLE_COMMANDS, "-h", "--help"):
        argv = ["summarize"] + argv  # `python -m dasslite.results DIR ...` == parse_test_res.py DIR ...
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "seeds", None) is not None:
        try:
            args.seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        if args.command == "summarize":
            if args.multi_exp:
                experiments, overall = summarize_multi(args.directory, args.keyword, args.test_log, args.ci95,
                                                       args.log_only)
                for exp in experiments:
                    print(format_summary(exp))
                print(format_summary(overall, header=False))
            else:
                print(format_summary(summarize(args.directory, args.keyword, args.test_log, args.ci95,
                                               args.log_only)))
        else:
            _table_command(args)
    except (NoResultsError, PlotUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
