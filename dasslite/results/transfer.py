"""Cross-dataset (xd) and domain-generalisation (dg) tables: one per (source, shots), a row per trainer / recipe trained
on the source, a column for the source and each target, and ``Target avg``.

The source runs live in ``output/transfer/train/<source>/...`` (one training serves both protocols) or, in the older
layout, ``output/<xd|dg>/train/...`` (still read, and preferred where a run is there); the evaluations in
``output/<xd|dg>/test/<target>/...``. A target run counts only if it loaded a model trained on that source.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence

from dasslite.recipes import ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS
from dasslite.results.cells import (both_checks, dataset_sort_key, iter_cfg_dirs, no_results, read_cell,
                                    resolve_protocol_root, shots_label, shots_number, trained_check)
from dasslite.results.grid import GridRow, GridTable
from dasslite.results.paper import paper_method
from dasslite.results.runs import Run


def trained_on(model_dir) -> Optional[str]:
    """The source dataset of an xd/dg model dir (``.../train/<source>/shots_<K>/<T>/<cfg>/seed<S>``), else None."""
    if not model_dir:
        return None
    parts = osp.normpath(str(model_dir)).replace("\\", "/").split("/")
    return parts[-5] if len(parts) >= 6 and parts[-6] == "train" else None


def paper_transfer_row(paper: dict, protocol: str, trainer: str, source: str, columns: Sequence[str]):
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
    proot = resolve_protocol_root(root, protocol, ("train", "test"))
    test_root = osp.join(proot, "test")
    want_shots = {shots_label(shots)} if shots is not None else None
    want_seeds = [int(s) for s in seeds] if seeds is not None else None
    groups: Dict[tuple, List[tuple]] = {}  # (source, shots) -> [(T, cfg)]
    train_roots: Dict[tuple, str] = {}  # (source, shots, T, cfg) -> the train folder holding it
    evaluated = {(t_name, cfg_name) for _, _, t_name, cfg_name, _ in iter_cfg_dirs(test_root, None, want_shots,
                                                                                   trainer, cfg)}
    for train_root in transfer_train_roots(proot):
        shared = not train_root.startswith(proot + os.sep)
        for src, shots_name, t_name, cfg_name, _ in iter_cfg_dirs(train_root, {source} if source else None,
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
            cols = sorted({ds for ds, _, t_name, cfg_name, _ in iter_cfg_dirs(test_root, None, {shots_name})
                           if ds != src and (t_name, cfg_name) in members}, key=dataset_sort_key)
        k = int(shots_number(shots_name)) if math.isfinite(shots_number(shots_name)) else None
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
                cells = {src: read_cell(osp.join(train_root, src, shots_name, t_name, cfg_name), want_seeds, expect,
                                        keyword, ci95, log_only, check=trained_check(t_name, cfg_name, "train"))}
                for target in cols:
                    cells[target] = read_cell(osp.join(test_root, target, shots_name, t_name, cfg_name),
                                              want_seeds, expect, keyword, ci95, log_only,
                                              check=both_checks(from_source, trained_check(t_name, cfg_name, "eval")))
                rows.append(GridRow(f"{t_name} / {cfg_name}", cells, t_name, cfg_name))
            trained = [c for c in cfg_names if not (t_name not in ZERO_SHOT_TRAINERS and c.endswith(ZERO_SHOT_SUFFIX))]
            if paper is not None and trained:  # the published row goes after that trainer's rows
                prow, note = paper_transfer_row(paper, protocol, t_name, src, [src] + cols)
                if prow is not None:
                    rows.append(prow)
                elif note not in notes:
                    notes.append(note)
        if any(r.published is not None for r in rows):
            notes.insert(0, f"Paper rows: {paper[protocol]['source']} ({paper[protocol].get('setting', '')}).")
        tables.append(GridTable(protocol, proot, "", "", shots_name, src, [src] + cols, rows, ci95, notes))
    if not any(c.n for t in tables for r in t.rows for c in r.cells.values()):
        raise no_results(proot, (("source", source), ("trainer", trainer), ("cfg", cfg),
                                 ("shots", next(iter(want_shots)) if want_shots else None), ("seeds", want_seeds)),
                         [r for t in tables for row in t.rows for r in row.missing])
    return tables
