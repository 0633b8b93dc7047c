"""Every figure of the results tools, drawn on matplotlib's Agg canvas (no pyplot: no global backend, no display):
the few-shot curves (the MoCoOp paper's Figure 3), the open-set ROC / OSCR curves and the comparison's grouped bars.
matplotlib is the optional ``plots`` extra; without it a PlotUnavailableError says so.

Few-shot curves: a panel per dataset and an ``Average`` panel, x = shots on a log2 axis, one line with markers per
table (trainer, and cfg when a trainer has two), error bars = the spread over seeds. A missing point is left out and
the line breaks there (no interpolation); a line's Average is drawn only at the shot counts where it has every
dataset of the figure, so its points always average the same datasets.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np

from dasslite.results.cells import dataset_sort_key, shots_number
from dasslite.results.compare import AVERAGE, Comparison
from dasslite.results.fewshot import collect_fewshot
from dasslite.results.grid import GridTable
from dasslite.results.osr import OsrTable, run_curves
from dasslite.results.runs import NoResultsError
from dasslite.utils.io import write_bytes_atomic


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
    k = shots_number(column)
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
    datasets = sorted({r.label for t in tables for r in t.rows if r.published is None}, key=dataset_sort_key)
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
    return write_bytes_atomic(path, png)


def osr_plot_png(tables: Sequence[OsrTable]) -> bytes:
    """ROC and OSCR curves, a row of two panels per table, as PNG bytes (matplotlib's Agg canvas, no pyplot)."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(
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


def comparison_plot_png(cmp: Comparison, title: Optional[str] = None) -> bytes:
    """Grouped bars: the primary metric per dataset (and the Average, last) per method, error bars = seed spread."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError("matplotlib is not installed (pip install 'dasslite-moe-prompt[plots]'): "
                                   "cannot draw the comparison plot") from None
    rows = cmp.rows + ([AVERAGE] if cmp.averages else [])
    n_m = len(cmp.methods)
    width = 0.8 / max(n_m, 1)
    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) * max(1, n_m) ** 0.5 + 2), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = matplotlib.colormaps["tab10"].colors
    x = np.arange(len(rows), dtype=float)
    for j, method in enumerate(cmp.methods):
        means, errs = [], []
        for row in rows:
            means.append(cmp.value(method, row, cmp.primary))
            sp = float("nan") if row == AVERAGE else method.stat(row, cmp.primary).spread
            errs.append(sp if math.isfinite(sp) else 0.0)
        means = np.array(means)
        shown = np.isfinite(means)
        offset = (j - (n_m - 1) / 2) * width
        ax.bar(x[shown] + offset, means[shown], width, yerr=np.array(errs)[shown], capsize=2,
               color=colors[j % len(colors)], label=method.label, error_kw={"elinewidth": 0.8})
        for xi in x[~shown]:
            ax.text(xi + offset, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([cmp.row_label(r) for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{cmp.primary_label} (%)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(n_m, 4), frameon=False, fontsize=8)
    sp = "95% CI" if cmp.ci95 else "std"
    ax.set_title(title or f"{cmp.title}\n{cmp.primary_label} per dataset; error bars: ± {sp} over seeds", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_comparison(cmp: Comparison, path: str) -> str:
    """Write the comparison's grouped bars to the PNG ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, comparison_plot_png(cmp))
