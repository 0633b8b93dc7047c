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

import argparse
import io
import json
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from tabulate import tabulate

from dasslite import results as results_mod
from dasslite import osr_metrics
from dasslite.osr_metrics import OSR_RESULTS_FILE, OSR_SCORES_FILE
from dasslite.utils.io import write_bytes_atomic

DEFAULT_METRICS = ("acc", "auroc", "oscr", "fpr95")
METRIC_NAMES = {"acc": "ACC", "auroc": "AUROC", "oscr": "OSCR", "fpr95": "FPR95", "aupr_in": "AUPR-in",
                "aupr_out": "AUPR-out", "dtacc": "DTACC", "open_auc": "OpenAUC", "macro_f1": "Macro-F1 (val θ)",
                "macro_f1_oracle": "Macro-F1 (oracle θ)"}
_SEED_RE = re.compile(r"^seed[_-]?(\d+)$")


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
    shots_label = None if shots is None else (str(shots) if str(shots).startswith("shots_") else f"shots_{shots}")
    if not osp.isdir(root):
        raise results_mod.NoResultsError(f"{root} does not exist (an output/osr folder of the osr sweep)")
    tables: Dict[tuple, OsrTable] = {}
    for phase in _dirs(root):
        for ds in _dirs(osp.join(root, phase)):
            if datasets and ds not in datasets:
                continue
            for k in _dirs(osp.join(root, phase, ds)):
                if shots_label and k != shots_label:
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
                            match = _SEED_RE.match(run_dir)
                            if not match or (seeds and int(match.group(1)) not in seeds):
                                continue
                            path = osp.join(root, phase, ds, k, tr, c, run_dir)
                            record, reason = _read_record(path, balance)
                            column.runs.append(OsrRun(path, phase, int(match.group(1)), record, reason))
    found = [t for t in tables.values() if any(col.complete for col in t.columns)]
    if not found:
        raise results_mod.NoResultsError(f"no finished open-set runs (complete {OSR_RESULTS_FILE}, balance "
                                         f"{balance}) under {root}")
    for table in found:
        table.columns = [col for col in table.columns if col.runs]
    return sorted(found, key=lambda t: (results_mod._dataset_sort_key(t.dataset), results_mod._shots_number(t.shots)))


def _cell(column: OsrColumn, score: str, metric: str, ci95: bool) -> str:
    values = [r.record["osr"]["metrics"][score][metric] for r in column.complete]
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return results_mod._fmt(float(np.mean(values)), results_mod.spread(values, ci95))


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


# ------------------------------------------------------------------------------------------------------------
# Curves
# ------------------------------------------------------------------------------------------------------------
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


def osr_plot_png(tables: Sequence[OsrTable]) -> bytes:
    """ROC and OSCR curves, a row of two panels per table, as PNG bytes (matplotlib's Agg canvas, no pyplot)."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise results_mod.PlotUnavailableError(
            "matplotlib is not installed (pip install 'dasslite-moe-prompt[plots]'): cannot draw the open-set curves"
        ) from None
    fig = Figure(figsize=(10, 4.2 * len(tables)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tables), 2, squeeze=False)
    colors = matplotlib.colormaps["tab10"].colors
    for row, t in enumerate(tables):
        roc_ax, oscr_ax = axes[row]
        roc_ax.plot([0, 1], [0, 1], color="0.8", lw=0.8, ls="--")
        for i, col in enumerate(t.columns):
            curves = [run_curves(run, t.score) for run in col.complete]
            auroc = np.mean([c["auroc"] for c in curves])
            oscr = np.mean([c["oscr"] for c in curves])
            for j, c in enumerate(curves):
                style = dict(color=colors[i % len(colors)], lw=1, alpha=0.7)
                roc_ax.plot(*c["roc"], label=None if j else f"{col.label}: AUROC {auroc:.1f}", **style)
                oscr_ax.plot(*c["oscr_curve"], label=None if j else f"{col.label}: OSCR {oscr:.1f}", **style)
        for ax, ylabel, what in ((roc_ax, "true positive rate (knowns accepted)", "ROC"),
                                 (oscr_ax, "correct classification rate", "OSCR")):
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_xlabel("false positive rate (unknowns accepted)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{what}: {t.dataset}, {t.shots}, {t.score.upper()} (one line per run)", fontsize=9)
            ax.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_osr(tables: Sequence[OsrTable], path: str) -> str:
    """Write the curves to ``path`` atomically (a failed drawing leaves an older figure in place)."""
    return write_bytes_atomic(path, osr_plot_png(tables))


# ------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dasslite.results osr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=osp.join("output", "osr"), help="an output/osr folder")
    p.add_argument("--trainer", nargs="+", default=None, help="only these trainers (default: all, side by side)")
    p.add_argument("--cfg", default=None, help="only this recipe")
    p.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    p.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    p.add_argument("--seeds", nargs="+", default=None, help="only these seeds")
    p.add_argument("--score", default="mls", choices=osr_metrics.SCORES, help="knownness score (default: mls)")
    p.add_argument("--balance", default="none", choices=osr_metrics.BALANCE_MODES,
                   help="only runs evaluated with this balance mode (default: none)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help=f"rows (default: {' '.join(DEFAULT_METRICS)}; 'all' or any of {' '.join(METRIC_NAMES)})")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--format", default="github", choices=["github", "plain", "simple", "grid", "pipe"])
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also draw the ROC and OSCR curves into this PNG")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    metrics = list(METRIC_NAMES) if args.metrics == ["all"] else args.metrics
    try:
        seeds = results_mod.parse_seeds(args.seeds) if args.seeds else None
        tables = collect_osr(args.root, args.dataset, trainer=args.trainer, cfg=args.cfg, shots=args.shots,
                             seeds=seeds, balance=args.balance, score=args.score, metrics=metrics, ci95=args.ci95)
    except ValueError as exc:
        parser.error(str(exc))
    except results_mod.NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_osr(tables, tablefmt=args.format))
    if args.plot:
        try:
            print(f"Plot written to {plot_osr(tables, args.plot)}")
        except (results_mod.PlotUnavailableError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
