"""Results of finished runs: per-folder summaries (CoOp's ``parse_test_res.py``) and base-to-new tables.

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

CLI
    python -m dasslite.results summarize DIR [--test-log] [--multi-exp] [--ci95] [--keyword accuracy] [--log-only]
    python -m dasslite.results base2new [ROOT] [--dataset D ...] [--trainer T] [--cfg C] [--shots K]
                                          [--seeds S ...] [--ci95] [--format github|plain] [--csv F] [--markdown F]
    (``python -m dasslite.results DIR`` is ``summarize DIR``; ``parse_test_res.py`` at the repository root is the
    same ``summarize`` under CoOp's name.)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

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
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")

_EVAL_ONLY_RE = re.compile(r"^\s*eval_only\s*:\s*(True|False)\s*$")
_SEED_RE = re.compile(r"^seed[_-]?(\d+)$")


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
# Base-to-new tables
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One column of one row: the runs behind it and their statistics."""

    runs: List[Run]
    ci95: bool = False

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


@dataclass
class Row:
    dataset: str
    base: Cell
    new: Cell

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
        return [r for r in self.base.runs + self.new.runs if not r.complete]


@dataclass
class Base2NewTable:
    """One (shots, trainer, cfg) group of a base-to-new tree: a row per dataset."""

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
                "of": len(self.rows)}

    @property
    def title(self) -> str:
        spread_name = "95% CI" if self.ci95 else "std"
        return (f"Base-to-new: {self.trainer} / {self.cfg} / {self.shots.replace('_', ' ')} "
                f"(mean ± {spread_name} over seeds; H = harmonic mean of mean Base and mean New)")


def _fmt(mean: float, sp: float) -> str:
    if math.isnan(mean):
        return "-"
    if math.isnan(sp):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {sp:.2f}"


def _seeds_cell(row: Row) -> str:
    return str(row.base.n) if row.base.n == row.new.n else f"{row.base.n}/{row.new.n}"


def _dataset_sort_key(name: str):
    low = name.lower()
    return (0, PAPER_ORDER.index(low), "") if low in PAPER_ORDER else (1, 0, low)


def _resolve_base2new_root(root: str) -> str:
    for candidate in (root, osp.join(root, "base2new")):
        if osp.isdir(osp.join(candidate, "train_base")) or osp.isdir(osp.join(candidate, "test_new")):
            return candidate
    if not osp.isdir(root):
        raise NoResultsError(f"no complete runs under {root}: no such folder")
    raise NoResultsError(f"no complete runs under {root}: expected train_base/ and test_new/ "
                         f"(the output/base2new layout) there or in {osp.join(root, 'base2new')}")


def _shots_label(shots) -> Optional[str]:
    if shots is None:
        return None
    shots = str(shots)
    return shots if shots.startswith("shots_") else f"shots_{shots}"


def collect_base2new(root: str, datasets: Optional[Iterable[str]] = None, trainer: Optional[str] = None,
                     cfg: Optional[str] = None, shots=None, seeds: Optional[Iterable[int]] = None,
                     keyword: str = "accuracy", ci95: bool = False, log_only: bool = False) -> List[Base2NewTable]:
    """Walk ``ROOT/{train_base,test_new}/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` into one table per (shots, T, cfg).

    ``seeds`` restricts the runs to those seeds; a requested seed without a folder is listed as missing.
    Raises NoResultsError naming the folder when there is no complete run at all.
    """
    base_root = _resolve_base2new_root(root)
    want_ds = set(datasets) if datasets else None
    want_shots = _shots_label(shots)
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    found: Dict[tuple, Dict[str, Dict[str, List[str]]]] = {}
    for split in ("train_base", "test_new"):
        split_dir = osp.join(base_root, split)
        if not osp.isdir(split_dir):
            continue
        for ds_dir in _subdirs(split_dir):
            ds = osp.basename(ds_dir)
            if want_ds is not None and ds not in want_ds:
                continue
            for shots_dir in _subdirs(ds_dir):
                shots_name = osp.basename(shots_dir)
                if not shots_name.startswith("shots_") or (want_shots and shots_name != want_shots):
                    continue
                for t_dir in _subdirs(shots_dir):
                    if trainer and osp.basename(t_dir) != trainer:
                        continue
                    for cfg_dir in _subdirs(t_dir):
                        if cfg and osp.basename(cfg_dir) != cfg:
                            continue
                        key = (shots_name, osp.basename(t_dir), osp.basename(cfg_dir))
                        entry = found.setdefault(key, {}).setdefault(ds, {"train_base": [], "test_new": []})
                        entry[split] = _subdirs(cfg_dir)
    # datasets asked for by name but absent entirely still get a row when the group is fixed
    if want_ds and trainer and cfg and want_shots:
        for ds in want_ds:
            found.setdefault((want_shots, trainer, cfg), {}).setdefault(ds, {"train_base": [], "test_new": []})

    tables = []
    for (shots_name, t_name, cfg_name) in sorted(found):
        rows = []
        for ds in sorted(found[(shots_name, t_name, cfg_name)], key=_dataset_sort_key):
            entry = found[(shots_name, t_name, cfg_name)][ds]
            cells = {}
            for split, sub in (("train_base", "base"), ("test_new", "new")):
                dirs = entry[split]
                if want_seeds is not None:
                    by_seed = {}
                    for d in dirs:
                        m = _SEED_RE.match(osp.basename(d))
                        if m:
                            by_seed[int(m.group(1))] = d
                    parent = osp.join(base_root, split, ds, shots_name, t_name, cfg_name)
                    dirs = [by_seed.get(s, osp.join(parent, f"seed{s}")) for s in want_seeds]
                runs = []
                for d in dirs:
                    if osp.isdir(d):
                        runs.append(read_run(d, keyword=keyword, signal="auto", log_only=log_only,
                                             expect={"subsample_classes": sub}))
                    else:
                        runs.append(Run(path=d, problem="not run (no such folder)"))
                cells[sub] = Cell(runs, ci95)
            rows.append(Row(ds, cells["base"], cells["new"]))
        tables.append(Base2NewTable(base_root, shots_name, t_name, cfg_name, rows, ci95))
    if not any(r.base.n or r.new.n for t in tables for r in t.rows):
        what = ", ".join(f"{k}={v}" for k, v in (("dataset", ",".join(sorted(want_ds)) if want_ds else None),
                                                 ("trainer", trainer), ("cfg", cfg), ("shots", want_shots),
                                                 ("seeds", want_seeds)) if v)
        detail = [f"  {r.path}: {r.problem}" for t in tables for row in t.rows for r in row.missing]
        msg = f"no complete runs under {base_root}" + (f" ({what})" if what else "")
        raise NoResultsError(msg + ("".join("\n" + d for d in detail[:20]) if detail else ""))
    return tables


HEADERS = ["Dataset", "Base", "New", "H", "Seeds"]


def table_rows(table: Base2NewTable) -> List[List[str]]:
    rows = [[r.dataset, _fmt(r.base.mean, r.base.spread), _fmt(r.new.mean, r.new.spread),
             _fmt(r.h, r.h_spread), _seeds_cell(r)] for r in table.rows]
    avg = table.average
    if avg:
        name = "Average" if avg["n_datasets"] == avg["of"] else f"Average ({avg['n_datasets']}/{avg['of']} datasets)"
        rows.append([name, f"{avg['base']:.2f}", f"{avg['new']:.2f}", f"{avg['h']:.2f}", ""])
    return rows


def format_base2new(tables: Sequence[Base2NewTable], tablefmt: str = "github", markdown: bool = False) -> str:
    """The tables as text (tabulate); ``markdown`` adds ``###`` headings for a .md file."""
    from tabulate import tabulate

    blocks = []
    for table in tables:
        lines = [("### " if markdown else "") + table.title, ""]
        lines.append(tabulate(table_rows(table), headers=HEADERS, tablefmt=tablefmt, disable_numparse=True))
        missing = [r for row in table.rows for r in row.missing]
        if missing:
            lines.append("")
            lines.append(f"Missing runs (not averaged): {len(missing)}")
            lines += [f"{'- ' if markdown else '  '}{r.path}: {r.problem}" for r in missing]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_csv(tables: Sequence[Base2NewTable], path: str) -> str:
    """Numbers, not strings: one line per dataset (and Average) per table."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["shots", "trainer", "cfg", "dataset", "base_mean", "base_spread", "new_mean", "new_spread",
                         "h", "h_spread", "n_base", "n_new", "spread"])
        for t in tables:
            kind = "ci95" if t.ci95 else "std"
            for r in t.rows:
                writer.writerow([t.shots, t.trainer, t.cfg, r.dataset, _num(r.base.mean), _num(r.base.spread),
                                 _num(r.new.mean), _num(r.new.spread), _num(r.h), _num(r.h_spread), r.base.n,
                                 r.new.n, kind])
            avg = t.average
            if avg:
                writer.writerow([t.shots, t.trainer, t.cfg, "Average", _num(avg["base"]), "", _num(avg["new"]), "",
                                 _num(avg["h"]), "", "", "", kind])
    return path


def _num(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.4f}"


def write_markdown(tables: Sequence[Base2NewTable], path: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_base2new(tables, tablefmt="github", markdown=True) + "\n")
    return path


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_summarize_args(sub.add_parser("summarize", help="mean ± std over the runs in a folder (parse_test_res)"))
    b = sub.add_parser("base2new", help="Base / New / H table of an output/base2new tree")
    b.add_argument("root", nargs="?", default=osp.join("output", "base2new"),
                   help="output/base2new (or output); default: %(default)s")
    b.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    b.add_argument("--trainer", default=None)
    b.add_argument("--cfg", default=None)
    b.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    b.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds (others are ignored)")
    b.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    b.add_argument("--keyword", default="accuracy")
    b.add_argument("--log-only", action="store_true", help="ignore results.json, parse log.txt only")
    b.add_argument("--format", default="github", choices=["github", "plain", "simple", "grid", "pipe"],
                   help="tabulate table format (default: github)")
    b.add_argument("--csv", default=None, help="also write the numbers to this CSV file")
    b.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("summarize", "base2new", "-h", "--help"):
        argv = ["summarize"] + argv  # `python -m dasslite.results DIR ...` == parse_test_res.py DIR ...
    args = build_parser().parse_args(argv)
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
            tables = collect_base2new(args.root, args.dataset, args.trainer, args.cfg, args.shots, args.seeds,
                                      args.keyword, args.ci95, args.log_only)
            print(format_base2new(tables, tablefmt=args.format))
            if args.csv:
                print(f"CSV written to {write_csv(tables, args.csv)}")
            if args.markdown:
                print(f"Markdown written to {write_markdown(tables, args.markdown)}")
    except NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
