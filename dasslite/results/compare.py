"""Methods side by side, paper-ready: the comparison the papers print (the MoCoOp paper's Table 1).

    python -m dasslite.results compare base2new [ROOT] [--trainers T ...] [--baseline T] [--paper]
    python -m dasslite.results compare fewshot|xd|dg|osr [ROOT] [--trainers T ...] [--baseline T] [--paper]
    OPTIONS: [--dataset D ...] [--shots K] [--source D] [--targets D ...] [--seeds S ...] [--ci95]
             [--format terminal|markdown|csv|latex] [--markdown F] [--csv F] [--latex F] [--plot FILE.png]

Layout
    Rows: the datasets in the papers' order (xd/dg: the source, then the targets), then ``Average``. A column group
    per *method* = a (trainer, recipe) of the tree, named by the trainer alone unless that trainer has several
    recipes in the comparison (``CoOp (vit_b16_ep50)``; a trainer's per-dataset default recipes are one method, see
    ``dasslite.results.cells.recipe_group``). Columns per method: base2new Base / New / H; fewshot one per shot count;
    xd / dg the accuracy. Cells are ``mean ± spread`` over seeds (std, or the 95% CI with ``--ci95``), read by
    ``dasslite.results`` (so its rules hold: only ``seed<N>`` folders, complete runs only, ...). One comparison per
    shot folder (base2new) or per (source, shots) (xd / dg).

Rules
    * Best per row and column: the highest mean (lowest for metrics where lower is better) among the methods, on the
      values as printed (2 decimals), so ties are all marked; only when two or more methods have a value.
    * A cell with no complete run shows ``missing`` and its reason is listed under the table; it never enters an
      average. A cell with fewer seeds than asked keeps the mean of the seeds it has; its missing runs are listed.
    * ``Average`` covers only the datasets every shown method has complete (every metric); the note under the table
      names them. base2new's Average H is the harmonic mean of the average Base and New (as ``dasslite.results``);
      xd / dg average the targets only (the source is not a target).
    * ``--baseline T`` (a trainer or a method name) adds a ``Δ <primary>`` column to every other method: its mean
      minus the baseline's, on the primary metric (base2new H, fewshot the largest shot count, xd / dg accuracy).
    * ``--paper``: a ``paper`` column group per method with the published numbers (base2new: MoCoOp's Table 1; dg:
      its DG table; fewshot and xd have none). The paper's Average: its printed average when every dataset of the
      paper's table is in ours, else the mean of its rows over our Average's datasets (marked †).

Formats
    terminal (tabulate ``simple``, best marked ``*``), Markdown (GitHub, best in bold), CSV (long: one line per
    cell, numbers only, with a ``best`` flag) and LaTeX (booktabs: ``\\multicolumn`` method headers with
    ``\\cmidrule``, best in ``\\textbf``, ``±`` in ``\\scriptsize``; ``\\usepackage{booktabs}`` in the preamble).
    ``--plot FILE.png``: the primary metric per dataset per method as grouped bars, error bars = spread over
    seeds, ``Average`` last.

Adding a protocol (e.g. open-set recognition)
    An *adapter* turns a results tree into :class:`Comparison` inputs; register it in ``ADAPTERS``. It provides
    ``name``, ``metrics`` (:class:`Metric`: key, label, ``higher_is_better``: FPR95 is lower-is-better),
    ``primary`` (a metric key), ``collect(root, opts) -> List[Section]`` (each Section: a title, the row
    datasets, and one :class:`MethodResult` per method with ``cells[dataset][metric] = Stat(mean, spread, n, reason)``
    and optional ``paper[dataset][metric]`` / ``paper_name``), ``averaged_rows(rows)`` (which rows the Average
    covers), ``average(method, datasets) -> {metric: value}`` and ``paper_average(method, datasets) -> ({metric:
    value}, mark)``. :class:`SimpleAdapter` gives the last three as "every row", "mean of the dataset means" and "mean
    of the paper's rows, marked †". An OSR adapter maps each (trainer, cfg) table of ``dasslite.results osr`` to a
    MethodResult with metrics ACC / AUROC / OSCR (higher) and FPR95 (lower); everything else here stays as is.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from dasslite.recipes import ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS
from dasslite.results.base2new import SUBSET_MARK as TABLE_SUBSET_MARK
from dasslite.results.base2new import collect_base2new
from dasslite.results.cells import PER_DATASET, Cell, dataset_sort_key, shots_number
from dasslite.results.fewshot import collect_fewshot
from dasslite.results.formatting import format_number
from dasslite.results.osr import collect_osr
from dasslite.results.paper import paper_method
from dasslite.results.runs import NoResultsError
from dasslite.results.stats import harmonic_mean, spread
from dasslite.results.transfer import collect_transfer, paper_transfer_row
TERMINAL, MARKDOWN, CSV, LATEX = "terminal", "markdown", "csv", "latex"
TERMINAL, MARKDOWN, CSV, LATEX = "terminal", "markdown", "csv", "latex"
TERMINAL, MARKDOWN, CSV, LATEX = "terminal", "markdown", "csv", "latex"
TERMINAL, MARKDOWN, CSV, LATEX = "terminal", "markdown", "csv", "latex"
FORMATS = (TERMINAL, MARKDOWN, CSV, LATEX)
AVERAGE = "Average"
MISSING = "missing"
SUBSET_MARK = TABLE_SUBSET_MARK


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool = True


@dataclass
class Stat:
    """One cell: mean and spread over seeds and how many seeds; ``reason`` says why it has no value."""

    mean: float = float("nan")
    spread: float = float("nan")
    n: int = 0
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)


@dataclass
class MethodResult:
    """A method (trainer + recipe) of one comparison: its cells per dataset and metric."""

    trainer: str
    cfg: str
    cells: Dict[str, Dict[str, Stat]] = field(default_factory=dict)
    paper: Dict[str, Dict[str, float]] = field(default_factory=dict)  # dataset -> metric -> published
    paper_name: Optional[str] = None  # the paper's name for the method (None: no published row)
    missing_runs: List[str] = field(default_factory=list)  # "path: problem" of runs that did not count
    label: str = ""

    def stat(self, dataset: str, metric: str) -> Stat:
        return self.cells.get(dataset, {}).get(metric) or Stat(reason=f"no runs of {self.trainer} / {self.cfg}")

    def complete(self, dataset: str, metrics: Sequence[Metric]) -> bool:
        return all(self.stat(dataset, m.key).ok for m in metrics)


@dataclass
class Section:
    """What an adapter collects for one comparison (one shot folder, one source ...)."""

    title: str
    rows: List[str]
    methods: List[MethodResult]
    row_labels: Dict[str, str] = field(default_factory=dict)  # dataset -> shown label (xd/dg: "imagenet (source)")
    notes: List[str] = field(default_factory=list)


class SimpleAdapter:
    """The defaults of an adapter: the Average covers every row, each metric is the mean of the dataset means."""

    name = ""
    metrics: List[Metric] = []
    primary = ""

    def averaged_rows(self, rows: Sequence[str]) -> List[str]:
        return list(rows)

    def average(self, method: MethodResult, datasets: Sequence[str]) -> Dict[str, float]:
        return {m.key: float(np.mean([method.stat(d, m.key).mean for d in datasets])) for m in self.metrics}

    def paper_average(self, method: MethodResult, datasets: Sequence[str]) -> tuple:
        """``({metric: value}, mark)``: the mean of the paper's rows over ``datasets`` (mark †), or ``({}, "")``."""
        rows = [method.paper[d] for d in datasets if d in method.paper]
        if not rows or len(rows) < len(datasets):
            return {}, ""
        values = {m.key: float(np.mean([r[m.key] for r in rows])) for m in self.metrics
                  if all(m.key in r for r in rows)}
        return values, SUBSET_MARK


def _reason(cell: Cell) -> Optional[str]:
    if cell.n:
        return None
    problems = list(dict.fromkeys(r.problem or "no value" for r in cell.missing))
    return "; ".join(problems) if problems else "no runs"


def _stat(cell: Cell) -> Stat:
    return Stat(cell.mean, cell.spread, cell.n, _reason(cell))


def _missing_runs(cells: Sequence[Cell]) -> List[str]:
    """Runs that did not count in cells that still have a value (the empty cells are listed as missing cells)."""
    return [f"{r.path}: {r.problem}" for c in cells if c.n for r in c.missing]


class Base2NewAdapter(SimpleAdapter):
    name = "base2new"
    metrics = [Metric("base", "Base"), Metric("new", "New"), Metric("h", "H")]
    primary = "h"

    def collect(self, root: str, opts: dict) -> List[Section]:
        tables = collect_base2new(root, opts.get("datasets"), shots=opts.get("shots"), seeds=opts.get("seeds"),
                                  ci95=opts.get("ci95", False))
        paper = opts.get("paper")
        sections: Dict[str, Section] = {}
        for table in tables:
            method = MethodResult(table.trainer, table.cfg)
            for row in table.rows:
                h = Stat(row.h, row.h_spread, len(row.h_per_seed),
                         None if row.has_both else "H needs both Base and New: "
                         + "; ".join(w for w, c in (("Base", row.base), ("New", row.new)) if not c.n) + " missing")
                method.cells[row.dataset] = {"base": _stat(row.base), "new": _stat(row.new), "h": h}
                method.missing_runs += _missing_runs([row.base, row.new])
            if paper is not None:
                zero_shot_of_trained = table.trainer not in ZERO_SHOT_TRAINERS and table.cfg.endswith(
                    ZERO_SHOT_SUFFIX)
                name = None if zero_shot_of_trained else paper_method(paper, table.trainer)
                entry = paper.get("base2new", {}).get("methods", {}).get(name) if name else None
                if entry:
                    method.paper_name = name
                    method.paper = {d: dict(v) for d, v in entry.get("datasets", {}).items()}
                    if entry.get("average"):
                        method.paper[AVERAGE] = dict(entry["average"])
            sec = sections.setdefault(table.shots, Section(
                f"Base-to-new, {table.shots.replace('_', ' ')}: Base / New / H per method", [], []))
            sec.methods.append(method)
        for sec in sections.values():
            sec.rows = sorted({d for m in sec.methods for d in m.cells}, key=dataset_sort_key)
            if opts.get("datasets"):
                sec.rows = sorted(set(sec.rows) | set(opts["datasets"]), key=dataset_sort_key)
        return [sections[k] for k in sorted(sections, key=shots_number)]

    def average(self, method: MethodResult, datasets: Sequence[str]) -> Dict[str, float]:
        base = float(np.mean([method.stat(d, "base").mean for d in datasets]))
        new = float(np.mean([method.stat(d, "new").mean for d in datasets]))
        return {"base": base, "new": new, "h": harmonic_mean(base, new)}

    def paper_average(self, method: MethodResult, datasets: Sequence[str]) -> tuple:
        per_ds = {d: v for d, v in method.paper.items() if d != AVERAGE}
        printed = method.paper.get(AVERAGE)
        if printed and per_ds and set(per_ds) <= set(datasets):
            return {k: printed[k] for k in ("base", "new", "h")}, ("*" if printed.get("unreliable") else "")
        rows = [per_ds[d] for d in datasets if d in per_ds]
        if not rows or len(rows) < len(datasets):
            return {}, ""
        base = float(np.mean([r["base"] for r in rows]))
        new = float(np.mean([r["new"] for r in rows]))
        return {"base": base, "new": new, "h": harmonic_mean(base, new)}, SUBSET_MARK


class FewshotAdapter(SimpleAdapter):
    name = "fewshot"
    primary = ""

    def collect(self, root: str, opts: dict) -> List[Section]:
        tables = collect_fewshot(root, opts.get("datasets"), shots=opts.get("shots_list"), seeds=opts.get("seeds"),
                                 ci95=opts.get("ci95", False))
        columns = sorted({c for t in tables for c in t.columns}, key=shots_number)
        self.metrics = [Metric(c, f"{c[len('shots_'):]} shot" + ("" if c == "shots_1" else "s")) for c in columns]
        self.primary = columns[-1] if columns else ""
        methods = []
        for table in tables:
            method = MethodResult(table.trainer, table.cfg)
            for row in table.rows:
                method.cells[row.label] = {c: _stat(cell) for c, cell in row.cells.items()}
                method.missing_runs += _missing_runs(list(row.cells.values()))
            methods.append(method)
        rows = sorted({d for m in methods for d in m.cells} | set(opts.get("datasets") or []), key=dataset_sort_key)
        return [Section("Few-shot (all classes): accuracy per shot count per method", rows, methods,
                        notes=["The paper prints the few-shot results as curves: no published numbers here."]
                        if opts.get("paper") is not None else [])]


class TransferAdapter(SimpleAdapter):
    """xd / dg: rows = the source, then the targets; the Average covers the targets."""

    metrics = [Metric("accuracy", "Acc.")]
    primary = "accuracy"

    def __init__(self, protocol: str) -> None:
        self.name = protocol
        self._source = ""

    def collect(self, root: str, opts: dict) -> List[Section]:
        tables = collect_transfer(root, self.name, source=opts.get("source"), targets=opts.get("targets"),
                                  shots=opts.get("shots"), seeds=opts.get("seeds"), ci95=opts.get("ci95", False))
        paper = opts.get("paper")
        sections = []
        for table in tables:
            methods = []
            for row in table.rows:
                if row.published is not None:
                    continue
                method = MethodResult(row.trainer, row.cfg or "")
                method.cells = {c: {"accuracy": _stat(cell)} for c, cell in row.cells.items()}
                method.missing_runs += _missing_runs(list(row.cells.values()))
                if paper is not None:
                    prow, _ = paper_transfer_row(paper, self.name, row.trainer, table.source, table.columns)
                    if prow is not None and not (row.trainer not in ZERO_SHOT_TRAINERS
                                                 and (row.cfg or "").endswith(ZERO_SHOT_SUFFIX)):
                        method.paper_name = paper_method(paper, row.trainer)
                        method.paper = {d: {"accuracy": v} for d, v in prow.published.items()}
                methods.append(method)
            what = "Cross-dataset" if self.name == "xd" else "Domain generalisation"
            notes = []
            if paper is not None and not paper.get(self.name):
                notes.append(f"The paper has no {self.name} table: nothing to put beside these columns.")
            sections.append(Section(f"{what}: trained on {table.source} ({table.shots.replace('_', ' ')}), accuracy "
                                    f"per method", list(table.columns), methods,
                                    {table.source: f"{table.source} (source)"}, notes))
        return sections

    def averaged_rows(self, rows: Sequence[str]) -> List[str]:
        return list(rows[1:])  # the targets


class OsrAdapter(SimpleAdapter):
    """Open-set recognition (``output/osr``): rows = datasets, per method ACC / AUROC / OSCR and FPR95 (lower is
    better) over every split × seed, from the MLS score and the balance mode ``none`` (the osr table's defaults)."""

    name = "osr"
    metrics = [Metric("acc", "ACC"), Metric("auroc", "AUROC"), Metric("oscr", "OSCR"),
               Metric("fpr95", "FPR95", higher_is_better=False)]
    primary = "auroc"

    def collect(self, root: str, opts: dict) -> List[Section]:
        tables = collect_osr(root, opts.get("datasets"), shots=opts.get("shots"), seeds=opts.get("seeds"),
                             ci95=opts.get("ci95", False))
        sections: Dict[str, Section] = {}
        for table in tables:
            sec = sections.setdefault(table.shots, Section(
                f"Open-set recognition, {table.shots.replace('_', ' ')}: ACC / AUROC / OSCR / FPR95 (score "
                f"{table.score.upper()}, balance {table.balance}) per method", [], []))
            for column in table.columns:
                method = next((m for m in sec.methods if (m.trainer, m.cfg) == (column.trainer, column.cfg)), None)
                if method is None:
                    method = MethodResult(column.trainer, column.cfg)
                    sec.methods.append(method)
                method.cells[table.dataset] = {m.key: self._stat(column, table.score, m.key, table.ci95)
                                               for m in self.metrics}
                if column.complete:
                    method.missing_runs += [f"{r.path}: {r.reason}" for r in column.runs if r.record is None]
        for sec in sections.values():
            sec.rows = sorted({d for m in sec.methods for d in m.cells} | set(opts.get("datasets") or []),
                              key=dataset_sort_key)
        return [sections[k] for k in sorted(sections, key=shots_number)]

    @staticmethod
    def _stat(column, score: str, metric: str, ci95: bool) -> Stat:
        values = [r.record["osr"]["metrics"][score][metric] for r in column.complete]
        values = [float(v) for v in values if v is not None]
        if not values:
            reasons = sorted({r.reason for r in column.runs if r.reason}) or ["no complete osr_results.json"]
            return Stat(reason="; ".join(reasons))
        return Stat(float(np.mean(values)), spread(values, ci95), len(values))


def _adapters() -> Dict[str, object]:
    return {"base2new": Base2NewAdapter(), "fewshot": FewshotAdapter(), "xd": TransferAdapter("xd"),
            "dg": TransferAdapter("dg"), "osr": OsrAdapter()}
ADAPTERS = _adapters  # protocol -> adapter (a fresh one per call: FewshotAdapter learns its columns)
EXTRA_ADAPTERS: Dict[str, type] = {}  # register_adapter(): protocols added later (e.g. osr)


def register_adapter(name: str, factory) -> None:
    """Make ``compare <name>`` use ``factory()`` (an adapter as described in the module docstring)."""
    EXTRA_ADAPTERS[name] = factory


def adapter_for(protocol: str):
    if protocol in EXTRA_ADAPTERS:
        return EXTRA_ADAPTERS[protocol]()
    adapters = ADAPTERS()
    if protocol not in adapters:
        known = ", ".join(list(adapters) + list(EXTRA_ADAPTERS))
        raise ValueError(f"no comparison for protocol {protocol!r}; known: {known}")
    return adapters[protocol]


class CompareError(ValueError):
    """Bad --trainers / --baseline (the message names the methods there are)."""


@dataclass
class Comparison:
    title: str
    metrics: List[Metric]
    primary: str
    rows: List[str]
    methods: List[MethodResult]
    row_labels: Dict[str, str]
    average_rows: List[str]  # the datasets the Average covers (every method has them complete)
    averaged_of: List[str]  # the rows an Average could cover
    averages: Dict[str, Dict[str, float]]  # method label -> metric -> value
    paper_averages: Dict[str, tuple]  # method label -> ({metric: value}, mark)
    baseline: Optional[MethodResult] = None
    show_paper: bool = False
    ci95: bool = False
    notes: List[str] = field(default_factory=list)

    def value(self, method: MethodResult, row: str, metric: str) -> float:
        if row == AVERAGE:
            return self.averages.get(method.label, {}).get(metric, float("nan"))
        s = method.stat(row, metric)
        return s.mean if s.ok else float("nan")

    def best(self, row: str, metric: Metric) -> set:
        """Labels of the methods with the best printed value in (row, metric); empty with fewer than two values."""
        vals = {m.label: round(self.value(m, row, metric.key), 2) for m in self.methods}
        vals = {k: v for k, v in vals.items() if math.isfinite(v)}
        if len(vals) < 2:
            return set()
        top = max(vals.values()) if metric.higher_is_better else min(vals.values())
        return {k for k, v in vals.items() if v == top}

    def delta(self, method: MethodResult, row: str) -> float:
        if self.baseline is None or method is self.baseline:
            return float("nan")
        return self.value(method, row, self.primary) - self.value(self.baseline, row, self.primary)

    def paper_value(self, method: MethodResult, row: str, metric: str) -> tuple:
        """(published value or nan, mark)."""
        if row == AVERAGE:
            values, mark = self.paper_averages.get(method.label, ({}, ""))
            return values.get(metric, float("nan")), mark
        return method.paper.get(row, {}).get(metric, float("nan")), ""

    @property
    def all_rows(self) -> List[str]:
        return self.rows + [AVERAGE]

    def row_label(self, row: str) -> str:
        if row == AVERAGE:
            n, of = len(self.average_rows), len(self.averaged_of)
            return AVERAGE if n == of else f"{AVERAGE} ({n}/{of})"
        return self.row_labels.get(row, row)

    @property
    def primary_label(self) -> str:
        return next(m.label for m in self.metrics if m.key == self.primary)


def _name_methods(methods: Sequence[MethodResult]) -> None:
    per_trainer: Dict[str, int] = {}
    for m in methods:
        per_trainer[m.trainer] = per_trainer.get(m.trainer, 0) + 1
    for m in methods:
        m.label = m.trainer if per_trainer[m.trainer] == 1 else f"{m.trainer} ({m.cfg})"


def _pick(methods: Sequence[MethodResult], wanted: str) -> List[MethodResult]:
    return [m for m in methods if wanted in (m.trainer, m.label, f"{m.trainer}/{m.cfg}")]


def build(adapter, section: Section, trainers: Optional[Sequence[str]] = None, baseline: Optional[str] = None,
          paper: bool = False, ci95: bool = False) -> Comparison:
    """A Comparison of ``section`` restricted to ``trainers`` (names or method labels, in that order)."""
    methods = list(section.methods)
    _name_methods(methods)
    if trainers:
        chosen: List[MethodResult] = []
        for name in trainers:
            found = _pick(methods, name)
            if not found:
                raise CompareError(f"--trainers {name}: no such method in {section.title!r}; there are: "
                                   f"{', '.join(m.label for m in methods)}")
            chosen += [m for m in found if m not in chosen]
        methods = chosen
        _name_methods(methods)
    base = None
    if baseline:
        found = _pick(methods, baseline)
        if len(found) != 1:
            names = ", ".join(m.label for m in found)
            why = f"it names {len(found)} methods ({names})" if found else "no such method"
            raise CompareError(f"--baseline {baseline}: {why} in {section.title!r}; choose one of: "
                               f"{', '.join(m.label for m in methods)}")
        base = found[0]
    averaged_of = adapter.averaged_rows(section.rows)
    common = [d for d in averaged_of if all(m.complete(d, adapter.metrics) for m in methods)]
    averages = {m.label: adapter.average(m, common) for m in methods} if common else {}
    paper_averages = {m.label: adapter.paper_average(m, common) for m in methods} if (paper and common) else {}
    notes = list(section.notes)
    if len(common) == len(averaged_of) and common:
        notes.append(f"{AVERAGE}: over all {len(common)} datasets ({', '.join(common)}).")
    elif common:
        left = [d for d in averaged_of if d not in common]
        notes.append(f"{AVERAGE}: over the {len(common)} of {len(averaged_of)} datasets every shown method has "
                     f"({', '.join(common)}); not averaged: {', '.join(left)}.")
    else:
        notes.append(f"{AVERAGE}: none: no dataset is complete for every shown method.")
    return Comparison(section.title, list(adapter.metrics), adapter.primary, list(section.rows), methods,
                      dict(section.row_labels), common, list(averaged_of), averages, paper_averages, base,
                      show_paper=paper, ci95=ci95, notes=notes)


def compare(protocol: str, root: str, trainers=None, baseline=None, paper: Optional[dict] = None, datasets=None,
            shots=None, seeds=None, ci95: bool = False, source=None, targets=None) -> List[Comparison]:
    """Every comparison of ``protocol`` under ``root`` (raises NoResultsError when there is no complete run)."""
    adapter = adapter_for(protocol)
    opts = {"datasets": datasets, "shots": shots, "seeds": seeds, "ci95": ci95, "paper": paper, "source": source,
            "targets": targets, "shots_list": None if shots is None else [shots]}
    sections = adapter.collect(root, opts)
    return [build(adapter, s, trainers, baseline, paper is not None, ci95) for s in sections]


def _columns(cmp: Comparison) -> List[tuple]:
    """``(method, kind, metric)`` per column; kind "ours" | "delta" | "paper"."""
    cols = []
    for m in cmp.methods:
        cols += [(m, "ours", metric) for metric in cmp.metrics]
        if cmp.baseline is not None and m is not cmp.baseline:
            cols.append((m, "delta", None))
        if cmp.show_paper and m.paper_name:
            cols += [(m, "paper", metric) for metric in cmp.metrics]
    return cols


def _sub_label(cmp: Comparison, kind: str, metric: Optional[Metric], fmt: str) -> str:
    if kind == "delta":
        delta = r"$\Delta$" if fmt == LATEX else "Δ"
        return f"{delta} {cmp.primary_label}"
    if kind == "paper":
        return f"paper {metric.label}"
    return metric.label


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _cell_text(cmp: Comparison, row: str, method: MethodResult, kind: str, metric: Optional[Metric], fmt: str,
               best: set) -> str:
    if kind == "delta":
        d = cmp.delta(method, row)
        if not math.isfinite(d):
            return "--" if fmt == LATEX else MISSING
        return f"${'+' if d >= 0 else '-'}${abs(d):.2f}" if fmt == LATEX else _signed(d)
    if kind == "paper":
        v, mark = cmp.paper_value(method, row, metric.key)
        if not math.isfinite(v):
            return "--" if fmt == LATEX else ""
        if fmt == LATEX:
            return f"{v:.2f}" + ({"†": r"$^\dagger$", "*": r"$^*$"}.get(mark, ""))
        return f"{v:.2f}{mark}"
    if row == AVERAGE:
        mean, sp = cmp.value(method, row, metric.key), float("nan")
    else:
        s = method.stat(row, metric.key)
        mean, sp = (s.mean, s.spread) if s.ok else (float("nan"), float("nan"))
    if not math.isfinite(mean):
        return "--" if fmt == LATEX else MISSING
    is_best = method.label in best
    if fmt == LATEX:
        text = rf"\textbf{{{mean:.2f}}}" if is_best else f"{mean:.2f}"
        return text + (rf"{{\scriptsize$\pm${sp:.2f}}}" if math.isfinite(sp) else "")
    text = f"**{mean:.2f}**" if (is_best and fmt == MARKDOWN) else f"{mean:.2f}"
    if math.isfinite(sp):
        text += f" ± {sp:.2f}"
    return text + (" *" if is_best and fmt == TERMINAL else "")


def grid(cmp: Comparison, fmt: str) -> List[List[str]]:
    cols = _columns(cmp)
    out = []
    for row in cmp.all_rows:
        best = {m.key: cmp.best(row, m) for m in cmp.metrics}
        out.append([cmp.row_label(row)] + [_cell_text(cmp, row, m, kind, metric, fmt,
                                                      best[metric.key] if kind == "ours" else set())
                                           for m, kind, metric in cols])
    return out


def missing_cells(cmp: Comparison) -> List[str]:
    lines = []
    for m in cmp.methods:
        for row in cmp.rows:
            for metric in cmp.metrics:
                s = m.stat(row, metric.key)
                if not s.ok:
                    lines.append(f"{m.label} / {cmp.row_label(row)} / {metric.label}: {s.reason or 'no value'}")
    return lines


def notes(cmp: Comparison) -> List[str]:
    sp = "95% CI" if cmp.ci95 else "std"
    lines = [f"mean ± {sp} over seeds; best per row marked (ties all marked), among two or more values."]
    if cmp.baseline is not None:
        lines.append(f"Δ {cmp.primary_label}: each method minus {cmp.baseline.label}.")
    if cmp.show_paper:
        named = [f"{m.label} = {m.paper_name}" for m in cmp.methods if m.paper_name]
        lines.append("paper: published numbers (dasslite/paper_results.json)"
                     + (f": {', '.join(named)}" if named else ": none for these methods")
                     + f"; {SUBSET_MARK} = mean of the paper's rows over the Average's datasets.")
    lines += cmp.notes
    recipes = [f"{m.label}: {m.cfg}" for m in cmp.methods if m.cfg != PER_DATASET]
    if recipes:
        lines.append("Recipes: " + "; ".join(recipes))
    return lines


def _footer(cmp: Comparison, bullet: str) -> List[str]:
    """The lines under a table: its missing cells and the runs that did not count, each item after ``bullet``."""
    lines: List[str] = []
    miss = missing_cells(cmp)
    if miss:
        lines += ["", "Missing cells (shown as missing, never averaged):"] + [bullet + x for x in miss]
    runs = [r for m in cmp.methods for r in m.missing_runs]
    if runs:
        lines += ["", f"Runs that did not count ({len(runs)}):"] + [bullet + r for r in runs]
    return lines


def format_comparison(cmp: Comparison, fmt: str = TERMINAL) -> str:
    """One comparison in ``fmt`` (terminal, markdown or latex; CSV is :func:`csv_text`)."""
    if fmt == LATEX:
        return latex(cmp)
    if fmt == CSV:
        return csv_text([cmp])
    from tabulate import tabulate

    cols = _columns(cmp)
    if fmt == MARKDOWN:
        headers = ["Dataset"] + [f"{m.label} {_sub_label(cmp, k, x, fmt)}" for m, k, x in cols]
        table = tabulate(grid(cmp, fmt), headers=headers, tablefmt="github", disable_numparse=True)
        return "\n".join([f"### {cmp.title}", "", table, ""] + [f"- {n}" for n in notes(cmp)] + _footer(cmp, "- "))
    headers, seen = ["Dataset"], set()
    for m, k, x in cols:
        top = m.label if m.label not in seen else ""
        seen.add(m.label)
        headers.append(f"{top}\n{_sub_label(cmp, k, x, fmt)}")
    table = tabulate(grid(cmp, fmt), headers=headers, tablefmt="simple", disable_numparse=True)
    return "\n".join([cmp.title, "", table, ""] + notes(cmp) + _footer(cmp, "  "))
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex(cmp: Comparison) -> str:
    """A booktabs tabular: method groups as ``\\multicolumn`` headers with ``\\cmidrule``, best in bold."""
    cols = _columns(cmp)
    groups: List[tuple] = []  # (label, first column, count)
    for i, (m, _, _) in enumerate(cols, start=2):
        if groups and groups[-1][0] == m.label:
            groups[-1] = (m.label, groups[-1][1], groups[-1][2] + 1)
        else:
            groups.append((m.label, i, 1))
    lines = [f"% {latex_escape(cmp.title)}", "% Needs \\usepackage{booktabs}."]
    lines += [f"% {n}" for n in notes(cmp)]
    lines.append(r"\begin{tabular}{l" + "".join(" " + "c" * g[2] for g in groups) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join([""] + [rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(label)}}}" for label, _, n in groups])
                 + r" \\")
    lines.append(" ".join(rf"\cmidrule(lr){{{s}-{s + n - 1}}}" for _, s, n in groups))
    lines.append(" & ".join(["Dataset"] + [_sub_label(cmp, k, x, LATEX) if k == "delta" else latex_escape(
        _sub_label(cmp, k, x, LATEX)) for _, k, x in cols]) + r" \\")
    lines.append(r"\midrule")
    body = grid(cmp, LATEX)
    for row, cells in zip(cmp.all_rows, body):
        if row == AVERAGE:
            lines.append(r"\midrule")
        lines.append(" & ".join([latex_escape(cells[0])] + cells[1:]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def csv_text(comparisons: Sequence[Comparison]) -> str:
    """Long format, numbers only: one line per (comparison, row, method, metric)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["comparison", "dataset", "method", "trainer", "cfg", "metric", "mean", "spread", "n", "best",
                     "delta_vs_baseline", "baseline", "paper", "missing_reason", "spread_kind"])
    for cmp in comparisons:
        for row in cmp.all_rows:
            best = {m.key: cmp.best(row, m) for m in cmp.metrics}
            for method in cmp.methods:
                for metric in cmp.metrics:
                    if row == AVERAGE:
                        s = Stat(cmp.value(method, row, metric.key), float("nan"), len(cmp.average_rows))
                    else:
                        s = method.stat(row, metric.key)
                    delta = cmp.delta(method, row) if metric.key == cmp.primary else float("nan")
                    pv = cmp.paper_value(method, row, metric.key)[0] if cmp.show_paper else float("nan")
                    writer.writerow([cmp.title, row, method.label, method.trainer, method.cfg, metric.key,
                                     format_number(s.mean if s.ok or row == AVERAGE else None), format_number(s.spread),
                                     s.n, int(method.label in best[metric.key]), format_number(delta),
                                     cmp.baseline.label if cmp.baseline else "", format_number(pv),
                                     "" if (s.ok or row == AVERAGE) else (s.reason or ""),
                                     "ci95" if cmp.ci95 else "std"])
    return buffer.getvalue()


def format_all(comparisons: Sequence[Comparison], fmt: str = TERMINAL) -> str:
    if fmt == CSV:
        return csv_text(comparisons)
    return "\n\n".join(format_comparison(c, fmt) for c in comparisons)


def print_if_several(protocol: str, root: str, out=None, shots=None, datasets=None, seeds=None, ci95: bool = False,
                     paper: Optional[dict] = None) -> bool:
    """After a sweep: print the comparison when more than one method has runs under ``root``; True if printed.

    For base2new / fewshot only the sweep's datasets are compared; for xd / dg ``datasets`` is [source, targets...].
    Problems reading other methods' runs never fail the finished sweep: they are reported in one line.
    """
    out = out if out is not None else sys.stdout
    if protocol not in EXTRA_ADAPTERS and protocol not in ADAPTERS():
        return False  # a protocol without a comparison adapter (yet): its own table is all there is
    kwargs = dict(seeds=seeds, ci95=ci95, paper=paper)
    shots = list(shots or [])
    if protocol in ("xd", "dg") and datasets:
        kwargs.update(source=datasets[0], targets=list(datasets[1:]) or None, shots=shots[0] if shots else None)
    elif protocol == "base2new":
        kwargs.update(datasets=datasets, shots=shots[0] if shots else None)
    else:
        kwargs.update(datasets=datasets)
    try:
        comparisons = [c for c in compare(protocol, root, **kwargs) if len(c.methods) > 1]
    except NoResultsError:
        return False
    except Exception as exc:  # noqa: BLE001 - the sweep itself succeeded; say why there is no comparison
        print(f"\n(no comparison of the methods under {root}: {exc})", file=out)
        return False
    if not comparisons:
        return False
    print(f"\nMethods under {root}, side by side (python -m dasslite.results compare {protocol} {root}):\n",
          file=out)
    print(format_all(comparisons, TERMINAL), file=out)
    return True
