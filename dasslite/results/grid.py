"""Tables of rows × columns of cells: few-shot (a row per dataset, a column per shot count, an Average row) and
cross-dataset / domain generalisation (a row per trainer / recipe, the source and each target, ``Target avg``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from dasslite.results.cells import PER_DATASET, Cell
from dasslite.results.formatting import (csv_writer, format_mean, format_number, ignored_lines, missing_lines,
                                         recipes_line, write_text)
from dasslite.results.runs import Run


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
            cells = [format_mean(row.cells[c].mean, row.cells[c].spread) if c in row.cells else "-"
                     for c in table.columns]
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
            lines += ["", recipes_line((r.label, r.cfg) for r in table.rows)]
        if table.notes:
            lines += [""] + table.notes
        lines += missing_lines([r for row in table.rows for r in row.missing], markdown)
        lines += ignored_lines([d for row in table.rows for d in row.ignored], markdown)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_grid_csv(tables: Sequence[GridTable], path: str) -> str:
    """Long format, numbers only: one line per cell (and per Average / Target avg)."""
    writer, buffer = csv_writer()
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
                                         format_number(row.published[c]), "", "", ""])
                elif c in row.cells:
                    cell = row.cells[c]
                    writer.writerow([t.protocol, t.source, shots, row.trainer, row.cfg, row.label, c,
                                     format_number(cell.mean), format_number(cell.spread), cell.n, kind])
            if t.protocol != "fewshot":
                mean, k, n = t.target_average(row)
                writer.writerow([t.protocol, t.source, t.shots, row.trainer, row.cfg or "", row.label,
                                 "target_avg", format_number(mean), "", f"{k}/{n}", ""])
        if t.protocol == "fewshot":
            for c in t.columns:
                mean, k, n = t.column_average(c)
                writer.writerow([t.protocol, "", c, t.trainer, t.cfg, "Average", c, format_number(mean), "", f"{k}/{n}",
                                 ""])
    return write_text(path, buffer.getvalue())


def write_grid_markdown(tables: Sequence[GridTable], path: str) -> str:
    return write_text(path, format_grids(tables, tablefmt="github", markdown=True) + "\n")
