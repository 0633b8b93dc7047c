"""How the tables print and write: ``mean ± spread`` cells, the notes under a table, atomic CSV / Markdown files."""
from __future__ import annotations

import csv
import io
import math
from typing import Dict, Iterable, List, Sequence

from dasslite.results.runs import Run


def recipes_line(pairs: Iterable[tuple]) -> str:
    """``Recipes: ds1, ds2: cfgA; ds3: cfgB`` from ``(dataset, cfg)`` pairs."""
    by_cfg: Dict[str, List[str]] = {}
    for dataset, cfg in pairs:
        by_cfg.setdefault(cfg, []).append(dataset)
    return "Recipes: " + "; ".join(f"{', '.join(ds)}: {cfg}" for cfg, ds in by_cfg.items())


def format_mean(mean: float, sp: float) -> str:
    if math.isnan(mean):
        return "-"
    if math.isnan(sp):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {sp:.2f}"


def format_number(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def missing_lines(runs: Sequence[Run], markdown: bool) -> List[str]:
    if not runs:
        return []
    return ["", f"Missing runs (not averaged): {len(runs)}"] + [
        f"{'- ' if markdown else '  '}{r.path}: {r.problem}" for r in runs]


def ignored_lines(folders: Sequence[str], markdown: bool) -> List[str]:
    if not folders:
        return []
    return ["", f"Ignored folders (not seed<N> runs, not averaged): {len(folders)}"] + [
        f"{'- ' if markdown else '  '}{d}" for d in folders]


def write_text(path: str, text: str) -> str:
    """``text`` into ``path`` atomically (``dasslite.utils.io``; importing it needs no torch)."""
    from dasslite.utils.io import write_text_atomic

    return write_text_atomic(path, text)


def csv_writer():
    """A csv.writer into memory and the buffer it writes to (tables are written to disk atomically, whole)."""
    buffer = io.StringIO(newline="")
    return csv.writer(buffer), buffer
