"""Split files (``split_zhou_<Name>.json``) and the two ways the lineage generates a split when none exists.

Engine-agnostic: items are built with the active engine's Datum (or ``datum_cls``), so the same readers
run under the built-in engine and under Dassl. Generation draws from python ``random`` in the lineage's
order; file listings are sorted first, so a seed gives the same split on every filesystem.
"""
from __future__ import annotations

import json
import os.path as osp
import random
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ...utils.io import write_atomic
from .base_dataset import engine_datum_cls
from .layout import list_class_dirs, list_files, require_dir

Splits = Tuple[list, list, list]
SPLIT_KEYS = ("train", "val", "test")

__all__ = ["Splits", "read_split", "save_split", "write_json", "split_groups", "read_and_split_data",
           "split_trainval", "load_or_create_split"]


def write_json(obj, path: str) -> None:
    """Write JSON with the lineage's formatting (indent 4, ``": "``), atomically (temp file + rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))

    write_atomic(path, write)


def _relative(impath: str, prefix: str) -> str:
    base = osp.join(prefix, "")
    if not impath.startswith(base):
        raise ValueError(f"Cannot save {impath!r} in a split file: it is not under {prefix!r}")
    return impath[len(base):]


def save_split(train: list, val: list, test: list, filepath: str, path_prefix: str) -> None:
    """Write ``{"train"|"val"|"test": [[path relative to path_prefix, label, classname], ...]}``."""
    split = {key: [(_relative(item.impath, path_prefix), item.label, item.classname) for item in items]
             for key, items in zip(SPLIT_KEYS, (train, val, test))}
    write_json(split, filepath)
    print(f"Saved split to {filepath}")


def _load_split_json(filepath: str) -> dict:
    try:
        with open(filepath, "r") as f:
            split = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Split file {filepath} is not valid JSON ({exc}); fix it or delete it to regenerate") from exc
    if not isinstance(split, dict):
        raise ValueError(f"Split file {filepath} must hold a JSON object with keys {list(SPLIT_KEYS)}, "
                         f"got {type(split).__name__}")
    missing = [k for k in SPLIT_KEYS if k not in split]
    if missing:
        raise ValueError(f"Split file {filepath} lacks key(s) {missing}; it needs {list(SPLIT_KEYS)}")
    for key in SPLIT_KEYS:
        if not isinstance(split[key], list):
            raise ValueError(f"Split file {filepath}: {key!r} must be a list, got {type(split[key]).__name__}")
    return split


def _entry(filepath: str, key: str, i: int, entry) -> Tuple[str, int, str]:
    shape_ok = isinstance(entry, (list, tuple)) and len(entry) == 3
    if shape_ok and isinstance(entry[0], str) and isinstance(entry[2], str) and not isinstance(entry[1], bool):
        try:
            return entry[0], int(entry[1]), entry[2]
        except (TypeError, ValueError):
            pass
    raise ValueError(f"Split file {filepath}: entry {key}[{i}] = {entry!r} is not "
                     "[relative image path (str), label (int), classname (str)]")


def read_split(filepath: str, path_prefix: str, datum_cls: Optional[type] = None) -> Splits:
    """Read a split file; paths are joined to ``path_prefix``, labels cast to int; every image must exist."""
    datum_cls = engine_datum_cls(datum_cls)
    print(f"Reading split from {filepath}")
    split = _load_split_json(filepath)
    out = []
    for key in SPLIT_KEYS:
        items = []
        for i, entry in enumerate(split[key]):
            rel, label, classname = _entry(filepath, key, i, entry)
            impath = osp.join(path_prefix, rel)
            if not osp.isfile(impath):
                raise FileNotFoundError(f"Image listed in split file {filepath} ({key}[{i}]) does not exist: "
                                        f"{impath}")
            items.append(datum_cls(impath=impath, label=label, classname=classname))
        out.append(items)
    return out[0], out[1], out[2]


def split_groups(groups: Mapping[int, Tuple[List[str], str]], p_trn: float = 0.5, p_val: float = 0.2,
                 datum_cls: Optional[type] = None, source: str = "") -> Splits:
    """Shuffle each label's images and cut them train/val/test by ``round`` (groups in the mapping's order)."""
    datum_cls = engine_datum_cls(datum_cls)
    train, val, test = [], [], []
    for label, (impaths, classname) in groups.items():
        impaths = list(impaths)
        random.shuffle(impaths)
        n_total = len(impaths)
        n_train, n_val = round(n_total * p_trn), round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if n_train <= 0 or n_val <= 0 or n_test <= 0:
            where = f" in {source}" if source else ""
            raise ValueError(f"Class {label} ({classname!r}){where} has {n_total} image(s): too few to split "
                             f"{p_trn:.0%}/{p_val:.0%}/{1 - p_trn - p_val:.0%} into non-empty train "
                             f"({n_train}), val ({n_val}) and test ({n_test})")
        parts = (impaths[:n_train], impaths[n_train:n_train + n_val], impaths[n_train + n_val:])
        for dest, part in zip((train, val, test), parts):
            dest.extend(datum_cls(impath=p, label=label, classname=classname) for p in part)
    return train, val, test


def read_and_split_data(image_dir: str, p_trn: float = 0.5, p_val: float = 0.2, ignored: Sequence[str] = (),
                        new_cnames: Optional[Mapping[str, str]] = None, datum_cls: Optional[type] = None) -> Splits:
    """Split ``image_dir/<class>/*`` per class (label = index of the sorted folder), renamed via ``new_cnames``."""
    require_dir(image_dir, "Image folder")
    categories = list_class_dirs(image_dir, ignored=ignored)
    if not categories:
        raise FileNotFoundError(f"No class folders in {image_dir}")
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    groups: Dict[int, Tuple[List[str], str]] = {}
    for label, category in enumerate(categories):
        folder = osp.join(image_dir, category)
        classname = new_cnames.get(category, category) if new_cnames else category
        groups[label] = ([osp.join(folder, name) for name in list_files(folder)], classname)
    return split_groups(groups, p_trn, p_val, datum_cls=datum_cls, source=image_dir)


def split_trainval(trainval: Iterable, p_val: float = 0.2) -> Tuple[list, list]:
    """Per label (first-appearance order), shuffle and move ``round(n * p_val)`` items to val."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    trainval = list(trainval)
    tracker: Dict[int, List[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            name = trainval[idxs[0]].classname
            raise ValueError(f"Class {label} ({name!r}) has {len(idxs)} trainval image(s): too few to hold out "
                             f"{p_val:.0%} for val")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def load_or_create_split(split_path: str, path_prefix: str, create: Callable[[], Splits],
                         datum_cls: Optional[type] = None) -> Splits:
    """Read the split file when it exists; otherwise ``create()`` the split and save it there."""
    if osp.exists(split_path):
        return read_split(split_path, path_prefix, datum_cls=datum_cls)
    print(f"Split file {split_path} not found; generating it")
    train, val, test = create()
    save_split(train, val, test, split_path, path_prefix)
    return train, val, test

