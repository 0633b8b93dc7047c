"""Base-to-new tables (``output/base2new/{train_base,test_new}/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``).

Base is read from ``train_base`` (a training, or an evaluation for zero-shot trainers), New from ``test_new``. As in
the CoCoOp/KgCoOp papers, H is the harmonic mean ``2BN/(B+N)`` of the *mean* Base and the *mean* New; its ``±`` is the
spread of the per-seed H over the seeds that have both. The Average row averages the dataset means over the datasets
with both, and its H is again the harmonic mean of the two averages.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from dasslite.recipes import ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS
from dasslite.results.cells import (PER_DATASET, Cell, dataset_sort_key, iter_cfg_dirs, no_results, read_cell,
                                    recipe_group, resolve_protocol_root, shots_label, trained_check)
from dasslite.results.formatting import (csv_writer, format_mean, format_number, ignored_lines, missing_lines,
                                         recipes_line, write_text)
from dasslite.results.paper import paper_method
from dasslite.results.runs import Run
from dasslite.results.stats import harmonic_mean, spread


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
    return resolve_protocol_root(root, "base2new", ("train_base", "test_new"))


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
    want_shots = shots_label(shots)
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    # (shots, T, group) -> ds -> cfg
    found: Dict[tuple, Dict[str, str]] = {}
    for split in ("train_base", "test_new"):
        for ds, shots_name, t_name, cfg_name, _ in iter_cfg_dirs(
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
        for ds in sorted(found[(shots_name, t_name, group)], key=dataset_sort_key):
            cfg_name = found[(shots_name, t_name, group)][ds]
            cells = {sub: read_cell(osp.join(base_root, split, ds, shots_name, t_name, cfg_name), want_seeds,
                                    {"subsample_classes": sub}, keyword, ci95, log_only,
                                    check=trained_check(t_name, cfg_name, phase))
                     for split, sub, phase in (("train_base", "base", "train"), ("test_new", "new", "eval"))}
            rows.append(Row(ds, cells["base"], cells["new"], cfg_name))
        tables.append(Base2NewTable(base_root, shots_name, t_name, group, rows, ci95))
    if not any(r.base.n or r.new.n for t in tables for r in t.rows):
        raise no_results(base_root, (("dataset", ",".join(sorted(want_ds)) if want_ds else None),
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
    rows = [[r.dataset, format_mean(r.base.mean, r.base.spread), format_mean(r.new.mean, r.new.spread),
             format_mean(r.h, r.h_spread), _seeds_cell(r)] for r in table.rows]
    avg = table.average
    if avg:
        name = "Average" if avg["n_datasets"] == avg["of"] else f"Average ({avg['n_datasets']}/{avg['of']} datasets)"
        rows.append([name, f"{avg['base']:.2f}", f"{avg['new']:.2f}", f"{avg['h']:.2f}", ""])
    if paper is not None:
        cells, _ = paper_base2new_rows(table, paper)
        rows = [r + c for r, c in zip(rows, cells)]
    return rows


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
            lines += ["", recipes_line((r.dataset, r.cfg) for r in table.rows)]
        if paper is not None:
            lines += [""] + paper_base2new_rows(table, paper)[1]
        lines += missing_lines([r for row in table.rows for r in row.missing], markdown)
        lines += ignored_lines([d for row in table.rows for d in row.ignored], markdown)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_csv(tables: Sequence[Base2NewTable], path: str, paper: Optional[dict] = None) -> str:
    """Numbers, not strings: one line per dataset (and Average) per table; ``paper`` adds paper_* columns."""
    writer, buffer = csv_writer()
    writer.writerow(["shots", "trainer", "cfg", "dataset", "base_mean", "base_spread", "new_mean", "new_spread",
                     "h", "h_spread", "n_base", "n_new", "spread"]
                    + (["paper_base", "paper_new", "paper_h"] if paper is not None else []))
    for t in tables:
        kind = "ci95" if t.ci95 else "std"
        extra = paper_base2new_rows(t, paper)[0] if paper is not None else None
        lines = [[t.shots, t.trainer, r.cfg or t.cfg, r.dataset,
                  *map(format_number, (r.base.mean, r.base.spread, r.new.mean, r.new.spread, r.h, r.h_spread)),
                  r.base.n, r.new.n, kind]
                 for r in t.rows]
        avg = t.average
        if avg:
            lines.append([t.shots, t.trainer, t.cfg, "Average", format_number(avg["base"]), "",
                          format_number(avg["new"]), "", format_number(avg["h"]), "", "", "", kind])
        for i, line in enumerate(lines):
            if extra is not None:  # numbers only: the marks are explained in the text tables
                line += [c.rstrip(UNRELIABLE_MARK + SUBSET_MARK) for c in extra[i]]
            writer.writerow(line)
    return write_text(path, buffer.getvalue())


def write_markdown(tables: Sequence[Base2NewTable], path: str, paper: Optional[dict] = None) -> str:
    return write_text(path, format_base2new(tables, tablefmt="github", markdown=True, paper=paper) + "\n")
