"""Which prompt experts a top-k router picks, per class and per dataset (counts, routing weights, heatmaps).

Per run (``ExpertUsage``)
    A trainer feeds every evaluated batch to ``update(labels, expert_index, expert_weight)``: the ground-truth
    labels [B], the router's top-k experts [B, k] and their routing weights [B, k]. Per class c and expert e it keeps
    ``counts[c, e]`` (images of c that had e among their top-k), ``weights[c, e]`` (the sum of e's routing weight
    over those images) and ``images[c]``. Summaries: ``selection_rate`` = counts / images (a row sums to k),
    ``mean_weight`` = weights / images (a row sums to 1 when the k weights are a softmax over the selected experts),
    ``dataset_share`` (fraction of all selections that went to each expert) and ``top_expert_per_class`` (highest
    mean weight, the lower index on ties). Classes never seen have NaN rates (``null`` in JSON, blank in CSV).

    ``write(out_dir)`` puts next to the results ``expert_usage.json`` (the raw counts, summaries, and the optional
    ``dataset`` / ``extra`` fields), ``expert_usage.csv`` (a row per class, then ``ALL``) and ``expert_usage.png``
    (classes x experts heatmap of the mean routing weight; class labels shrink with the class count and are dropped
    above 60 classes). All three are rendered in memory before the first file is replaced, and each is replaced
    atomically: a failure while computing or drawing touches no file, and no file is ever half-written.

Per dataset (``summarize_runs`` / the CLI)
    ``expert_usage.json`` files are collected from the given files and folders (recursively). A run's dataset is its
    JSON ``dataset`` field; without one it is the folder holding the file relative to the argument it was found
    under, minus a trailing ``seed<N>`` folder (``out/eurosat/seed1/expert_usage.json`` under ``out`` -> ``eurosat``);
    when that leaves nothing (the argument is the run folder itself) it is the name of the run folder, or of its
    parent for a ``seed<N>`` folder. Runs (seeds) of one dataset with the same experts and k are merged by summing
    their counts, so shares are pooled over seeds; runs of one dataset with different experts stay separate rows
    (``dtd [2]``).

    Datasets have their own expert sets (MoCoOp's experts are the dataset's template groups), so the dataset table
    and heatmap index experts by *router slot*: row = dataset, column = expert index 0..E-1, value = share of
    selections. When every dataset has the same expert names the columns are labelled with them; otherwise columns
    are ``#0``, ``#1``, ... and the names are printed under the table (and inside the heatmap cells). Slots beyond a
    dataset's expert count are blank. The CSV is long-format (a row per dataset and expert, with the expert's name),
    which stays unambiguous whatever the expert sets are.

CLI
    python -m dasslite.analysis.expert_usage RUN_DIR_OR_JSON [...] [--out DIR] [--name expert_usage.json]
                                             [--format github]
    prints the dataset x expert share table; with ``--out`` also writes ``expert_usage_datasets.csv`` and
    ``expert_usage_datasets.png`` there.

Neither torch nor matplotlib is imported with the module: tensors are recognised by their ``detach`` method,
matplotlib (Agg canvas, no pyplot, no display) is imported only to draw, and ``dasslite.utils.io`` only to write.
Without matplotlib the PNG is skipped with a warning (it is the optional ``plots`` extra); the JSON and CSV are
still written.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from dasslite.results.cells import dataset_sort_key  # the tables' dataset order
from dasslite.results.runs import SEED_DIR_RE  # the tables' seed folders

USAGE_FILE = "expert_usage.json"
DATASETS_PREFIX = "expert_usage_datasets"
FORMAT = "dasslite.expert_usage/1"
MAX_CLASS_LABELS = 60  # more classes than this: the heatmap drops its class tick labels


class NoUsageError(RuntimeError):
    """No expert-usage file where one was expected (the message names the path)."""


class UsageFileError(ValueError):
    """An expert-usage file that cannot be used: unreadable, missing keys, inconsistent shapes (names the file)."""


# ------------------------------------------------------------------------------------------------------------
# Per-run accumulator
# ------------------------------------------------------------------------------------------------------------
def _as_numpy(x) -> np.ndarray:
    """A CPU numpy copy of a tensor (any device, with grad, bf16/fp16 as float64) or of an array-like."""
    if hasattr(x, "detach"):  # torch.Tensor, recognised without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()  # numpy has no bfloat16
        return x.numpy()
    return np.asarray(x)


def _as_int(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0 (a class never seen has no rate)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nan_to_none(arr) -> list:
    """Nested lists of floats with NaN as None (JSON has no NaN)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 0:
        return None if math.isnan(arr) else float(arr)
    return [_nan_to_none(a) for a in arr]


def _fmt(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.6f}"


def load_summary(mean_weight: Sequence[float], selection_rate: Sequence[float]) -> dict:
    """How evenly a router spreads its load over E experts (one formula for the training log and these files).

    ``mean_weight`` [E]: mean routing weight per image (sums to 1); ``selection_rate`` [E]: fraction of images that
    had the expert among their top-k (sums to k). Returns ``entropy``: the entropy of ``mean_weight`` divided by
    log E (1 = every expert carries the same weight, 0 = one expert carries all of it; 1 for a single expert);
    ``busiest_expert``: the index with the largest mean weight (the lower one on ties); ``busiest_share``: its share
    of all routing weight (1/E when even, 1 when it carries everything); ``busiest_picked``: the fraction of images
    that had it among their top-k (1.0 = every image picked it; with k of E experts at least k/E for some expert)."""
    weights = [float(w) for w in mean_weight]
    rates = [float(r) for r in selection_rate]
    if not weights or len(weights) != len(rates):
        raise ValueError(f"need one mean weight and one selection rate per expert, got {len(weights)} and {len(rates)}")
    total = sum(weights)
    if not total > 0 or any(w < 0 for w in weights):
        raise ValueError(f"mean weights must be non-negative with a positive sum, got {weights}")
    probs = [w / total for w in weights]
    entropy = -sum(p * math.log(p) for p in probs if p > 0)
    busiest = max(range(len(probs)), key=lambda e: (probs[e], -e))
    return {"entropy": entropy / math.log(len(probs)) if len(probs) > 1 else 1.0, "busiest_expert": busiest,
            "busiest_share": probs[busiest], "busiest_picked": rates[busiest]}


class ExpertUsage:
    """Per-class counts and routing weights of the experts a top-k router selects (see the module docstring)."""

    def __init__(self, classnames: Sequence[str], expert_names: Sequence[str]):
        self.classnames = [str(c) for c in classnames]
        self.expert_names = [str(e) for e in expert_names]
        if not self.classnames:
            raise ValueError("ExpertUsage needs at least one class")
        if not self.expert_names:
            raise ValueError("ExpertUsage needs at least one expert")
        if len(set(self.expert_names)) != len(self.expert_names):
            raise ValueError(f"expert names must be unique, got {self.expert_names}")
        n_classes, n_experts = len(self.classnames), len(self.expert_names)
        self.counts = np.zeros((n_classes, n_experts), dtype=np.int64)
        self.weights = np.zeros((n_classes, n_experts), dtype=np.float64)
        self.images = np.zeros(n_classes, dtype=np.int64)
        self.top_k: Optional[int] = None  # set by the first update; every later batch must use the same k

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def num_experts(self) -> int:
        return len(self.expert_names)

    @property
    def total_images(self) -> int:
        return int(self.images.sum())

    def __repr__(self) -> str:
        return (f"ExpertUsage({self.num_classes} classes, {self.num_experts} experts, top_k={self.top_k}, "
                f"{self.total_images} images)")

    # -- accumulation ----------------------------------------------------------------------------------------
    def update(self, labels, expert_index, expert_weight) -> None:
        """Add one batch: labels [B], expert_index [B, k], expert_weight [B, k] (tensors on any device, or arrays).

        A top-1 router may pass [B] for both. Everything is validated before anything is added, so a bad batch
        leaves the counts unchanged.
        """
        labels = _as_int(_as_numpy(labels), "labels")
        index = _as_int(_as_numpy(expert_index), "expert_index")
        weight = _as_numpy(expert_weight).astype(np.float64, copy=False)
        if index.ndim == 1:
            index = index[:, None]
        if weight.ndim == 1:
            weight = weight[:, None]
        if labels.ndim != 1:
            raise ValueError(f"labels must have shape [B], got {list(labels.shape)}")
        if index.ndim != 2:
            raise ValueError(f"expert_index must have shape [B, k], got {list(index.shape)}")
        if index.shape[0] != labels.shape[0]:
            raise ValueError(f"expert_index has {index.shape[0]} rows but labels has {labels.shape[0]} "
                             f"(expert_index {list(index.shape)}, labels {list(labels.shape)})")
        if weight.shape != index.shape:
            raise ValueError(f"expert_weight must have the shape of expert_index {list(index.shape)}, "
                             f"got {list(weight.shape)}")
        n_classes, n_experts = self.num_classes, self.num_experts
        k = index.shape[1]
        if not 1 <= k <= n_experts:
            raise ValueError(f"top-k must be between 1 and the {n_experts} experts, got k={k} "
                             f"(expert_index {list(index.shape)})")
        if self.top_k is not None and k != self.top_k:
            raise ValueError(f"this batch has k={k} selected experts per image, earlier batches had k={self.top_k}")
        bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"labels[{i}] = {labels[i]} is out of range for {n_classes} classes "
                             f"(valid: 0..{n_classes - 1})")
        bad = (index < 0) | (index >= n_experts)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"expert_index[{i}, {j}] = {index[i, j]} is out of range for {n_experts} experts "
                             f"(valid: 0..{n_experts - 1})")
        if k > 1:
            ordered = np.sort(index, axis=1)
            dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if dup.any():
                i = int(np.argmax(dup))
                raise ValueError(f"expert_index row {i} selects an expert twice: {index[i].tolist()} "
                                 f"(top-k experts must be distinct)")
        bad = ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"expert_weight[{i}, {j}] = {weight[i, j]}: routing weights must be finite and >= 0")

        self.top_k = k
        if labels.size == 0:
            return
        cells = (np.repeat(labels, k) * n_experts + index.ravel())
        size = n_classes * n_experts
        self.counts += np.bincount(cells, minlength=size).reshape(n_classes, n_experts)
        self.weights += np.bincount(cells, weights=weight.ravel(), minlength=size).reshape(n_classes, n_experts)
        self.images += np.bincount(labels, minlength=n_classes)

    def update_dense(self, labels, weights) -> None:
        """Add a batch of dense weights [B, E] (every expert weighted for every image, e.g. a soft gate, or weights
        averaged over several routers as pMoE's dispatchers): recorded as top-E selections, so ``mean_weight`` is
        the informative summary and ``selection_rate`` is 1 everywhere."""
        weights = _as_numpy(weights)
        if weights.ndim != 2 or weights.shape[1] != self.num_experts:
            raise ValueError(f"dense weights must have shape [B, {self.num_experts}], got {list(weights.shape)}")
        index = np.broadcast_to(np.arange(self.num_experts), weights.shape)
        self.update(labels, index, weights)

    def merge(self, other: "ExpertUsage") -> "ExpertUsage":
        """Add ``other``'s counts into this one (in place; returns self). Same experts and k are required.

        Different class lists are joined by name (this run's classes first, then ``other``'s new ones), e.g. base
        and new classes of one dataset; that needs unique class names on both sides.
        """
        if other.expert_names != self.expert_names:
            raise ValueError(f"cannot merge usage of different experts: {self.expert_names} vs {other.expert_names}")
        if self.top_k is not None and other.top_k is not None and self.top_k != other.top_k:
            raise ValueError(f"cannot merge usage with top_k={self.top_k} and top_k={other.top_k}")
        if other.classnames == self.classnames:
            rows = np.arange(self.num_classes)
        else:
            for usage in (self, other):
                if len(set(usage.classnames)) != len(usage.classnames):
                    raise ValueError("cannot merge usage over different class lists when class names repeat")
            new = [c for c in other.classnames if c not in set(self.classnames)]
            if new:
                self.classnames = self.classnames + new
                self.counts = np.vstack([self.counts, np.zeros((len(new), self.num_experts), np.int64)])
                self.weights = np.vstack([self.weights, np.zeros((len(new), self.num_experts), np.float64)])
                self.images = np.concatenate([self.images, np.zeros(len(new), np.int64)])
            position = {c: i for i, c in enumerate(self.classnames)}
            rows = np.array([position[c] for c in other.classnames], dtype=np.int64)
        np.add.at(self.counts, rows, other.counts)
        np.add.at(self.weights, rows, other.weights)
        np.add.at(self.images, rows, other.images)
        if self.top_k is None:
            self.top_k = other.top_k
        return self

    # -- summaries -------------------------------------------------------------------------------------------
    def selection_rate(self) -> np.ndarray:
        """[C, E] fraction of a class's images that had the expert among their top-k (rows sum to k)."""
        return _safe_div(self.counts, self.images[:, None])

    def mean_weight(self) -> np.ndarray:
        """[C, E] mean routing weight per image of the class, 0 if not selected (rows sum to 1 for softmax weights)."""
        return _safe_div(self.weights, self.images[:, None])

    def dataset_share(self) -> np.ndarray:
        """[E] fraction of all top-k selections (over every class) that went to each expert."""
        totals = self.counts.sum(axis=0)
        return _safe_div(totals, np.full(totals.shape, totals.sum()))

    def dataset_mean_weight(self) -> np.ndarray:
        """[E] mean routing weight per image over the whole dataset (the CSV's ``ALL`` row)."""
        return _safe_div(self.weights.sum(axis=0), np.full(self.num_experts, self.images.sum()))

    def top_expert_per_class(self) -> List[Optional[str]]:
        """Per class, the expert with the highest mean routing weight (lower index on ties; None if unseen)."""
        mean = self.mean_weight()
        return [self.expert_names[int(np.argmax(row))] if seen else None
                for row, seen in zip(mean, self.images > 0)]

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The raw accumulators as JSON-serialisable lists (what ``from_dict`` reads back exactly)."""
        return {
            "classnames": list(self.classnames),
            "expert_names": list(self.expert_names),
            "top_k": self.top_k,
            "counts": self.counts.tolist(),
            "weights": self.weights.tolist(),
            "images": self.images.tolist(),
        }

    @classmethod
    def from_dict(cls, record: dict) -> "ExpertUsage":
        """Rebuild from ``to_dict()`` output (or a written JSON); raises ValueError naming a missing/bad key."""
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        missing = [k for k in ("classnames", "expert_names", "counts", "weights", "images") if k not in record]
        if missing:
            raise ValueError(f"missing key(s) {', '.join(missing)}")
        usage = cls(record["classnames"], record["expert_names"])
        shape = (usage.num_classes, usage.num_experts)
        try:
            counts = np.asarray(record["counts"], dtype=np.float64)
            weights = np.asarray(record["weights"], dtype=np.float64)
            images = np.asarray(record["images"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"counts/weights/images are not numeric arrays ({exc})") from None
        for name, arr, want in (("counts", counts, shape), ("weights", weights, shape),
                                ("images", images, shape[:1])):
            if arr.shape != want:
                raise ValueError(f"{name} has shape {list(arr.shape)}, expected {list(want)} "
                                 f"({shape[0]} classes x {shape[1]} experts)")
        for name, arr in (("counts", counts), ("images", images)):
            if (arr < 0).any() or (arr != np.round(arr)).any():
                raise ValueError(f"{name} must be non-negative integers")
        top_k = record.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or null, got {top_k!r}")
        usage.counts = counts.astype(np.int64)
        usage.weights = weights
        usage.images = images.astype(np.int64)
        usage.top_k = top_k
        return usage

    def summary(self) -> dict:
        """The derived numbers stored in the JSON beside the raw counts (NaN as None)."""
        return {
            "total_images": self.total_images,
            "total_selections": int(self.counts.sum()),
            "dataset_share": _nan_to_none(self.dataset_share()),
            "dataset_mean_weight": _nan_to_none(self.dataset_mean_weight()),
            "selection_rate": _nan_to_none(self.selection_rate()),
            "mean_weight": _nan_to_none(self.mean_weight()),
            "top_expert_per_class": self.top_expert_per_class(),
            "router_load": self.router_load(),
        }

    def router_load(self) -> Optional[dict]:
        """The whole evaluation's router load (:func:`load_summary` over the dataset; None before any image)."""
        if self.total_images == 0:
            return None
        selection = self.counts.sum(axis=0) / self.total_images
        summary = load_summary(self.dataset_mean_weight(), selection)
        summary["busiest_expert"] = self.expert_names[summary["busiest_expert"]]
        return summary

    # -- files -----------------------------------------------------------------------------------------------
    def csv_text(self) -> str:
        """A row per class (name, images, per expert: count and mean weight), then an ``ALL`` row."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = ["class", "images"]
        for name in self.expert_names:
            header += [f"count[{name}]", f"mean_weight[{name}]"]
        writer.writerow(header)
        mean = self.mean_weight()
        for c, classname in enumerate(self.classnames):
            row = [classname, int(self.images[c])]
            for e in range(self.num_experts):
                row += [int(self.counts[c, e]), _fmt(mean[c, e])]
            writer.writerow(row)
        row = ["ALL", self.total_images]
        for total, w in zip(self.counts.sum(axis=0), self.dataset_mean_weight()):
            row += [int(total), _fmt(w)]
        writer.writerow(row)
        return buf.getvalue()

    def heatmap_png(self, title: Optional[str] = None) -> bytes:
        """The classes x experts heatmap of the mean routing weight, as PNG bytes (needs matplotlib)."""
        n_classes = self.num_classes
        if title is None:
            k = f"top-{self.top_k}" if self.top_k else "top-k"
            title = f"Mean routing weight per class ({self.total_images} images, {k})"
        show_rows = n_classes <= MAX_CLASS_LABELS
        annotate = n_classes <= 20 and self.num_experts <= 12
        mean = self.mean_weight()
        return _heatmap_png(
            mean, row_labels=self.classnames if show_rows else None, col_labels=self.expert_names, title=title,
            colorbar_label="mean routing weight",
            ylabel="class" if show_rows else f"{n_classes} classes (labels omitted)",
            cell_text=[[("" if math.isnan(v) else f"{v:.2f}") for v in row] for row in mean] if annotate else None)

    def write(self, out_dir: str, prefix: str = "expert_usage", title: Optional[str] = None,
              dataset: Optional[str] = None, extra: Optional[dict] = None, plot: bool = True) -> List[str]:
        """Write ``<prefix>.json``, ``<prefix>.csv`` and ``<prefix>.png`` into ``out_dir``; returns their paths.

        ``dataset`` and ``extra`` (JSON-serialisable) are stored in the JSON; ``dataset`` is what the per-dataset
        summary groups runs by. Every file is rendered before the first one is replaced, each write is atomic.
        Without matplotlib the PNG is skipped with a warning (``plot=False`` skips it silently).
        """
        if dataset is not None and not isinstance(dataset, str):
            raise TypeError(f"dataset must be a string, got {type(dataset).__name__}")
        payload = {"format": FORMAT, "dataset": dataset, "extra": dict(extra or {})}
        payload.update(self.to_dict())
        payload["summary"] = self.summary()
        json_text = json.dumps(payload, indent=2, allow_nan=False) + "\n"  # fails here, before any file is touched
        files = {"json": json_text.encode("utf-8"), "csv": self.csv_text().encode("utf-8")}
        if plot:
            if title is None and dataset:
                k = f"top-{self.top_k}" if self.top_k else "top-k"
                title = f"{dataset}: mean routing weight per class ({self.total_images} images, {k})"
            png = _maybe_png(lambda: self.heatmap_png(title))
            if png is not None:
                files["png"] = png
        return _write_files(out_dir, prefix, files)


def _write_files(out_dir: str, prefix: str, files: Dict[str, bytes]) -> List[str]:
    """Each ``<prefix>.<ext>`` atomically, in the order given; returns the paths."""
    from dasslite.utils.io import write_bytes_atomic

    return [write_bytes_atomic(osp.join(out_dir, f"{prefix}.{ext}"), data) for ext, data in files.items()]


def _maybe_png(render) -> Optional[bytes]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        warnings.warn("matplotlib is not installed (pip install 'dasslite-moe-prompt[plots]'): heatmap PNG skipped",
                      RuntimeWarning, stacklevel=3)
        return None
    return render()


# ------------------------------------------------------------------------------------------------------------
# Heatmaps
# ------------------------------------------------------------------------------------------------------------
def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _heatmap_png(matrix: np.ndarray, row_labels: Optional[Sequence[str]], col_labels: Sequence[str], title: str,
                 colorbar_label: str, ylabel: str, cell_text: Optional[List[List[str]]] = None,
                 col_width: float = 0.6, row_height: Optional[float] = None, text_size: float = 7) -> bytes:
    """Render a heatmap to PNG bytes with matplotlib's Agg canvas (no pyplot: no global backend, no display)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.float64)
    n_rows, n_cols = matrix.shape
    finite = matrix[np.isfinite(matrix)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    if row_labels is not None:
        # 9 pt up to 15 rows, shrinking linearly to 5 pt at MAX_CLASS_LABELS rows
        row_font = 9.0 - 4.0 * min(max(n_rows - 15, 0), MAX_CLASS_LABELS - 15) / (MAX_CLASS_LABELS - 15)
        height = 1.8 + max(n_rows, 3) * (row_height or (0.3 if n_rows <= 15 else 0.17))
    else:
        row_font, height = 0.0, min(2.0 + 0.06 * n_rows, 14.0)
    width = min(3.5 + col_width * max(n_cols, 3), 30.0)

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e0e0e0")
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", interpolation="nearest", cmap=cmap,
                      vmin=0.0, vmax=vmax)
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([_short(c) for c in col_labels], rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    if row_labels is not None:
        ax.set_yticks(range(n_rows))
        ax.set_yticklabels([_short(r, 40) for r in row_labels], fontsize=row_font)
    else:
        ax.set_yticks([])
    ax.set_xlabel("expert")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if cell_text is not None:
        for i in range(n_rows):
            for j in range(n_cols):
                if cell_text[i][j]:
                    value = matrix[i, j]
                    bright = math.isfinite(value) and value > 0.6 * vmax
                    ax.text(j, i, cell_text[i][j], ha="center", va="center", fontsize=text_size,
                            color="black" if bright or not math.isfinite(value) else "white")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------------------
# Per-dataset aggregation
# ------------------------------------------------------------------------------------------------------------
@dataclass
class DatasetUsage:
    """One row of the dataset table: the merged usage of a dataset's runs and the files it came from."""

    dataset: str
    usage: ExpertUsage
    sources: List[str] = field(default_factory=list)
    label: str = ""  # the row name: the dataset, or "<dataset> [2]" for a second expert set of the same dataset

    def __post_init__(self):
        self.label = self.label or self.dataset

    @property
    def runs(self) -> int:
        return len(self.sources)

    @property
    def expert_names(self) -> List[str]:
        return self.usage.expert_names

    @property
    def share(self) -> np.ndarray:
        return self.usage.dataset_share()


def find_usage_files(path: str, filename: str = USAGE_FILE) -> List[str]:
    """``path`` itself if it is a file, else every ``filename`` below the folder (sorted, hidden folders skipped)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise NoUsageError(f"{path}: no such file or folder")
    found = []
    for folder, subdirs, files in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if filename in files:
            found.append(osp.join(folder, filename))
    if not found:
        raise NoUsageError(f"no {filename} under {path}")
    return sorted(found)


def load_usage(path: str) -> Tuple[ExpertUsage, dict]:
    """Read one written JSON: ``(usage, record)``. Raises UsageFileError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageFileError(f"{path}: cannot read expert usage ({exc})") from None
    try:
        return ExpertUsage.from_dict(record), record
    except (ValueError, TypeError) as exc:
        raise UsageFileError(f"{path}: not an expert-usage file: {exc}") from None


def _dataset_of(json_path: str, record: dict, root: str) -> str:
    """The JSON's ``dataset`` field, else the folder name rule of the module docstring."""
    name = record.get("dataset")
    if isinstance(name, str) and name.strip():
        return name.strip()
    folder = osp.dirname(osp.abspath(json_path))
    base = osp.abspath(root) if osp.isdir(root) else folder
    parts = [p for p in osp.relpath(folder, base).split(os.sep) if p not in ("", ".")]
    if parts and SEED_DIR_RE.match(parts[-1]):
        parts = parts[:-1]
    if parts:
        return "/".join(parts)
    if SEED_DIR_RE.match(osp.basename(folder)):
        folder = osp.dirname(folder)
    return osp.basename(folder) or folder


def summarize_runs(paths: Union[str, Sequence[str]], filename: str = USAGE_FILE) -> List[DatasetUsage]:
    """Collect expert-usage JSONs under ``paths`` and merge them per dataset (rows in the papers' dataset order).

    Raises NoUsageError when a path does not exist or holds no file, UsageFileError for a bad file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise NoUsageError("no paths given")
    seen, groups = set(), {}
    order: Dict[str, list] = {}  # dataset -> its group keys in order of appearance
    for root in paths:
        for json_path in find_usage_files(root, filename):
            real = osp.realpath(json_path)
            if real in seen:  # the same file reached through two arguments
                continue
            seen.add(real)
            usage, record = load_usage(json_path)
            dataset = _dataset_of(json_path, record, root)
            key = (dataset, tuple(usage.expert_names), usage.top_k)
            if key not in groups:
                groups[key] = DatasetUsage(dataset, usage, [json_path])
                order.setdefault(dataset, []).append(key)
                continue
            try:
                groups[key].usage.merge(usage)
            except ValueError as exc:
                raise UsageFileError(f"{json_path}: cannot merge into {dataset}: {exc}") from None
            groups[key].sources.append(json_path)
    rows = []
    for dataset in sorted(order, key=dataset_sort_key):
        for i, key in enumerate(order[dataset]):
            row = groups[key]
            row.label = dataset if i == 0 else f"{dataset} [{i + 1}]"
            rows.append(row)
    return rows


def _shared_names(rows: Sequence[DatasetUsage]) -> Optional[List[str]]:
    names = {tuple(r.expert_names) for r in rows}
    return list(names.pop()) if len(names) == 1 else None


def format_dataset_table(rows: Sequence[DatasetUsage], tablefmt: str = "github") -> str:
    """Dataset x expert share (% of all top-k selections, runs pooled) as a tabulate table, plus the expert legend."""
    from tabulate import tabulate

    shared = _shared_names(rows)
    width = max(r.usage.num_experts for r in rows)
    experts = shared if shared is not None else [f"#{e}" for e in range(width)]
    headers = ["dataset", "runs", "images", "k"] + experts
    body = []
    for r in rows:
        cells = [f"{100 * s:.1f}%" if math.isfinite(s) else "-" for s in r.share]
        body.append([r.label, r.runs, r.usage.total_images, r.usage.top_k or "-"] + cells
                    + [""] * (width - len(cells)))
    lines = ["Expert share per dataset (% of all top-k selections; runs of a dataset pooled)",
             tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)]
    if shared is None:  # one line per expert: names (templates) may contain commas
        lines.append("Experts per dataset:")
        for r in rows:
            lines.append(f"  {r.label}")
            lines += [f"    #{e}: {name}" for e, name in enumerate(r.expert_names)]
    return "\n".join(lines)


def dataset_csv_text(rows: Sequence[DatasetUsage]) -> str:
    """Long format: a row per dataset and expert (index and name), with selections, share and mean weight."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", "runs", "images", "top_k", "expert_index", "expert", "selections", "share",
                     "mean_weight"])
    for r in rows:
        selections = r.usage.counts.sum(axis=0)
        for e, (name, share, weight) in enumerate(zip(r.expert_names, r.share, r.usage.dataset_mean_weight())):
            writer.writerow([r.label, r.runs, r.usage.total_images, r.usage.top_k or "", e, name,
                             int(selections[e]), _fmt(share), _fmt(weight)])
    return buf.getvalue()


def dataset_heatmap_png(rows: Sequence[DatasetUsage], title: Optional[str] = None) -> bytes:
    """Datasets x expert slots, coloured by share; cells show the share (and the expert name if sets differ)."""
    shared = _shared_names(rows)
    width = max(r.usage.num_experts for r in rows)
    matrix = np.full((len(rows), width), np.nan)
    text = [["" for _ in range(width)] for _ in rows]
    for i, r in enumerate(rows):
        matrix[i, :r.usage.num_experts] = r.share
        for e, (name, share) in enumerate(zip(r.expert_names, r.share)):
            pct = f"{100 * share:.0f}%" if math.isfinite(share) else "-"
            text[i][e] = pct if shared is not None else "\n".join(_wrap(name) + [pct])
    columns = shared if shared is not None else [f"expert #{e}" for e in range(width)]
    sizes = {} if shared is not None else {"col_width": 1.3, "row_height": 0.6, "text_size": 7.5}
    return _heatmap_png(matrix, row_labels=[r.label for r in rows], col_labels=columns,
                        title=title or "Expert share per dataset (runs pooled)",
                        colorbar_label="share of top-k selections", ylabel="dataset", cell_text=text, **sizes)


def _wrap(name: str, width: int = 20, lines: int = 3) -> List[str]:
    """An expert name as at most ``lines`` lines (templates share their beginnings, so cutting short hides them)."""
    wrapped = textwrap.wrap(name, width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][:width - 1] + "\u2026"
    return wrapped


def write_dataset_summary(rows: Sequence[DatasetUsage], out_dir: str, prefix: str = DATASETS_PREFIX,
                          plot: bool = True) -> List[str]:
    """Write ``<prefix>.csv`` and ``<prefix>.png`` (atomically) into ``out_dir``; returns their paths."""
    if not rows:
        raise NoUsageError("no datasets to write")
    files = {"csv": dataset_csv_text(rows).encode("utf-8")}
    if plot:
        png = _maybe_png(lambda: dataset_heatmap_png(rows))
        if png is not None:
            files["png"] = png
    return _write_files(out_dir, prefix, files)


# ------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dasslite.analysis.expert_usage",
        description="Per-dataset expert usage of mixture-of-prompt runs: merges the expert_usage.json of every run "
                    "(seed) of a dataset and prints the dataset x expert share table.")
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_JSON",
                        help="run folders (searched recursively) or expert_usage.json files")
    parser.add_argument("--out", metavar="DIR",
                        help=f"also write {DATASETS_PREFIX}.csv and {DATASETS_PREFIX}.png into DIR")
    parser.add_argument("--name", default=USAGE_FILE, help=f"file name to look for in folders (default: {USAGE_FILE})")
    parser.add_argument("--format", default="github", help="tabulate table format (default: github)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = summarize_runs(args.paths, filename=args.name)
        print(format_dataset_table(rows, tablefmt=args.format))
        if args.out:
            for path in write_dataset_summary(rows, args.out):
                print(f"written: {path}")
    except (NoUsageError, UsageFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
