"""Open-set tables and curves: ``python -m dasslite.results osr ROOT [--plot FILE.png]``.

Runs are the ``seed<S>`` folders of ``ROOT/<phase>/<dataset>/shots_<K>/<Trainer>/<cfg>/`` (``ROOT`` is an
``output/osr`` tree; the phase is ``split<i>`` on the open-set benchmarks, ``base_new`` on the CoOp datasets) whose
``osr_results.json`` is complete. For each (dataset, shots) one table: a row per metric, a column per trainer / cfg,
``mean ± std`` over every run of that column (the splits × seeds; population std as in CoOp's parser, ``--ci95`` for
a 95% interval), and a ``Runs`` row. One score (``--score``, default MLS, as Vaze et al. and FSMoE) and one balance
mode (``--balance``, default none) per table; ACC / AUROC / OSCR / FPR95 by default, ``--metrics all`` (or names)
for the others. A run folder without a complete record is listed as missing, never averaged.

``--plot FILE.png`` draws, per (dataset, shots), the ROC curve (TPR against FPR) and the OSCR curve (correct
classification rate against FPR) of every run from its ``osr_scores.npz``: one colour per column, one thin line per
run (split / seed), the column's mean AUROC / OSCR in the legend. Needs matplotlib (the ``plots`` extra).
"""
from __future__ import annotations

import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from tabulate import tabulate

from dasslite import osr_metrics
from dasslite.osr_metrics import OSR_RESULTS_FILE, OSR_SCORES_FILE
from dasslite.results.cells import dataset_sort_key, shots_label, shots_number
from dasslite.results.formatting import format_mean
from dasslite.results.runs import SEED_DIR_RE, NoResultsError
from dasslite.results.stats import spread
DEFAULT_METRICS = ("acc", "auroc", "oscr", "fpr95")
METRIC_NAMES = {"acc": "ACC", "auroc": "AUROC", "oscr": "OSCR", "fpr95": "FPR95", "aupr_in": "AUPR-in",
                "aupr_out": "AUPR-out", "dtacc": "DTACC", "open_auc": "OpenAUC", "macro_f1": "Macro-F1 (val θ)",
                "macro_f1_oracle": "Macro-F1 (oracle θ)"}


@dataclass
class OsrRun:
    """One run folder; ``record`` is its complete osr_results.json, or None (``reason`` says why)."""

    path: str
    phase: str
    seed: int
    record: Optional[dict] = None
    reason: str = ""


@dataclass
class OsrColumn:
    """The runs of one trainer / cfg on one (dataset, shots)."""

    trainer: str
    cfg: str
    runs: List[OsrRun] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.trainer} ({self.cfg})"

    @property
    def complete(self) -> List[OsrRun]:
        return [r for r in self.runs if r.record is not None]


@dataclass
class OsrTable:
    dataset: str
    shots: str
    score: str
    balance: str
    metrics: Sequence[str]
    columns: List[OsrColumn] = field(default_factory=list)
    ci95: bool = False


def _read_record(path: str, balance: str) -> tuple:
    file = osp.join(path, OSR_RESULTS_FILE)
    if not osp.isfile(file):
        return None, f"no {OSR_RESULTS_FILE}"
    try:
        with open(file, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"unreadable {OSR_RESULTS_FILE} ({exc})"
    if not isinstance(record, dict) or record.get("complete") is not True or "osr" not in record:
        return None, f"incomplete {OSR_RESULTS_FILE}"
    if record.get("balance", "none") != balance:
        return None, f"balance {record.get('balance')!r}, not {balance!r}"
    return record, ""


def _dirs(path: str) -> List[str]:
    return sorted(d for d in os.listdir(path) if osp.isdir(osp.join(path, d))) if osp.isdir(path) else []


def collect_osr(root: str, datasets: Optional[Sequence[str]] = None, trainer=None, cfg: Optional[str] = None,
                shots=None, seeds: Optional[Sequence[int]] = None, balance: str = "none", score: str = "mls",
                metrics: Sequence[str] = DEFAULT_METRICS, ci95: bool = False) -> List[OsrTable]:
    """The tables of an ``output/osr`` tree (see the module docstring); NoResultsError when nothing matches."""
    if score not in osr_metrics.SCORES:
        raise ValueError(f"unknown score {score!r}; choose from {', '.join(osr_metrics.SCORES)}")
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)} or all")
    trainers = [trainer] if isinstance(trainer, str) else list(trainer or [])
    want_shots = shots_label(shots)
    if not osp.isdir(root):
        raise NoResultsError(f"{root} does not exist (an output/osr folder of the osr sweep)")
    tables: Dict[tuple, OsrTable] = {}
    for phase in _dirs(root):
        for ds in _dirs(osp.join(root, phase)):
            if datasets and ds not in datasets:
                continue
            for k in _dirs(osp.join(root, phase, ds)):
                if want_shots and k != want_shots:
                    continue
                for tr in _dirs(osp.join(root, phase, ds, k)):
                    if trainers and tr not in trainers:
                        continue
                    for c in _dirs(osp.join(root, phase, ds, k, tr)):
                        if cfg and c != cfg:
                            continue
                        table = tables.setdefault((ds, k), OsrTable(ds, k, score, balance, list(metrics), ci95=ci95))
                        column = next((col for col in table.columns if (col.trainer, col.cfg) == (tr, c)), None)
                        if column is None:
                            column = OsrColumn(tr, c)
                            table.columns.append(column)
                        for run_dir in _dirs(osp.join(root, phase, ds, k, tr, c)):
                            match = SEED_DIR_RE.match(run_dir)
                            if not match or (seeds and int(match.group(1)) not in seeds):
                                continue
                            path = osp.join(root, phase, ds, k, tr, c, run_dir)
                            record, reason = _read_record(path, balance)
                            column.runs.append(OsrRun(path, phase, int(match.group(1)), record, reason))
    found = [t for t in tables.values() if any(col.complete for col in t.columns)]
    if not found:
        raise NoResultsError(f"no finished open-set runs (complete {OSR_RESULTS_FILE}, balance "
                             f"{balance}) under {root}")
    for table in found:
        table.columns = [col for col in table.columns if col.runs]
    return sorted(found, key=lambda t: (dataset_sort_key(t.dataset), shots_number(t.shots)))


def _cell(column: OsrColumn, score: str, metric: str, ci95: bool) -> str:
    values = [r.record["osr"]["metrics"][score][metric] for r in column.complete]
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return format_mean(float(np.mean(values)), spread(values, ci95))


def format_osr(tables: Sequence[OsrTable], tablefmt: str = "github") -> str:
    """Each table with its title, the trainers side by side, and the missing runs under it."""
    blocks = []
    for t in tables:
        spread_name = "95% CI" if t.ci95 else "std"
        title = (f"Open-set recognition: {t.dataset}, {t.shots}, score {t.score.upper()}, balance {t.balance} "
                 f"(mean ± {spread_name} over splits × seeds)")
        rows = [[METRIC_NAMES[m]] + [_cell(col, t.score, m, t.ci95) for col in t.columns] for m in t.metrics]
        rows.append(["Runs"] + [str(len(col.complete)) for col in t.columns])
        lines = [title, tabulate(rows, headers=["Metric"] + [col.label for col in t.columns], tablefmt=tablefmt)]
        for col in t.columns:
            for run in col.runs:
                if run.record is None:
                    lines.append(f"missing: {run.path} ({run.reason})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def load_scores(run: OsrRun, score: str) -> Dict[str, np.ndarray]:
    """The per-image arrays of a run (``osr_scores.npz``); FileNotFoundError naming the file and the fix."""
    path = osp.join(run.path, OSR_SCORES_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the curves need each run's per-image scores; re-run that "
                                f"evaluation (move its {OSR_RESULTS_FILE} away and run the osr sweep again)")
    with np.load(path) as data:
        return {k: data[k] for k in ("known_label", "known_pred", f"known_{score}", f"unknown_{score}")}


def run_curves(run: OsrRun, score: str) -> dict:
    """A run's ROC and OSCR curves and areas (percent), from its per-image scores."""
    s = load_scores(run, score)
    known, unknown = s[f"known_{score}"], s[f"unknown_{score}"]
    correct = s["known_pred"] == s["known_label"]
    return {"roc": osr_metrics.roc(known, unknown), "oscr_curve": osr_metrics.oscr_curve(known, correct, unknown),
            "auroc": 100 * osr_metrics.auroc(known, unknown), "oscr": 100 * osr_metrics.oscr(known, correct, unknown)}
