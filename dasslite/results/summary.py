"""CoOp's ``parse_test_res.py`` on one folder of seed runs (``python -m dasslite.results summarize DIR``)."""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from dasslite.results.runs import NoResultsError, Run, collect_runs, log_keyword, subdirs
from dasslite.results.stats import spread


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
    kw = log_keyword(summary.keyword)
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
    for sub in subdirs(directory):
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
