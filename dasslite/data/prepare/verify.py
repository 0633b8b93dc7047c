"""The verification pass: every image a split names exists and opens, and the per-split counts are the published
ones. Each problem is reported with the file and what was expected; nothing is fixed silently."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

from PIL import Image

from .recipes import Check, Recipe

__all__ = ["VerificationError", "verify_recipe", "run_check"]

MAX_LISTED = 5  # problems named one by one in a message; the rest are counted


class VerificationError(RuntimeError):
    """A prepared dataset that does not match its recipe (missing/unreadable images, wrong counts)."""


def _opens(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many types for corrupt files
        return False


def _check_images(paths: List[str], open_images: bool) -> Tuple[List[str], List[str]]:
    missing = [p for p in paths if not os.path.isfile(p)]
    broken = [p for p in paths if open_images and os.path.isfile(p) and not _opens(p)]
    return missing, broken


def _read_json_split(path: str) -> Dict[str, list]:
    if not os.path.isfile(path):
        raise VerificationError(f"split file {path} is missing")
    try:
        with open(path) as handle:
            split = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise VerificationError(f"split file {path} cannot be read as JSON ({exc}); delete it and run again") from exc
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val", "test")):
        raise VerificationError(f"split file {path} must hold lists under 'train', 'val' and 'test'")
    return split


def _split_images(dataset_dir: str, check: Check) -> Dict[str, List[str]]:
    path = os.path.join(dataset_dir, check.path)
    split = _read_json_split(path)
    prefix = os.path.join(dataset_dir, check.prefix)
    out = {}
    for key in ("train", "val", "test"):
        entries = split[key]
        bad = [e for e in entries if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str))]
        if bad:
            raise VerificationError(f"split file {path}: {key} entry {bad[0]!r} is not [path, label, classname]")
        out[key] = [os.path.join(prefix, e[0]) for e in entries]
    return out


def _fgvc_images(dataset_dir: str, check: Check) -> Dict[str, List[str]]:
    out = {}
    for key in ("train", "val", "test"):
        path = os.path.join(dataset_dir, f"images_variant_{key}.txt")
        if not os.path.isfile(path):
            raise VerificationError(f"FGVCAircraft list {path} is missing")
        with open(path) as handle:
            ids = [line.split(" ")[0] for line in (raw.strip() for raw in handle) if line]
        out[key] = [os.path.join(dataset_dir, "images", f"{i}.jpg") for i in ids]
    if not os.path.isfile(os.path.join(dataset_dir, "variants.txt")):
        raise VerificationError(f"FGVCAircraft class list {os.path.join(dataset_dir, 'variants.txt')} is missing")
    return out


def _folder_images(dataset_dir: str, check: Check) -> Dict[str, List[str]]:
    folder = os.path.join(dataset_dir, check.path)
    if not os.path.isdir(folder):
        raise VerificationError(f"image folder {folder} is missing")
    classes = sorted(e.name for e in os.scandir(folder)
                     if e.is_dir() and not e.name.startswith(".") and e.name not in check.ignored)
    if check.classes and len(classes) != check.classes:
        raise VerificationError(f"{folder} holds {len(classes)} class folders, expected {check.classes}")
    images = []
    for name in classes:
        class_dir = os.path.join(folder, name)
        images += [os.path.join(class_dir, f) for f in sorted(os.listdir(class_dir)) if not f.startswith(".")]
    return {check.split: images}


_READERS = {"split_json": _split_images, "fgvc_lists": _fgvc_images, "class_folders": _folder_images}


def run_check(dataset_dir: str, check: Check) -> Dict[str, int]:
    """Run one check; return its per-split image counts, or raise VerificationError naming what is wrong."""
    if check.kind not in _READERS:
        raise ValueError(f"unknown check kind {check.kind!r}; valid: {sorted(_READERS)}")
    per_split = _READERS[check.kind](dataset_dir, check)
    counts = {key: len(paths) for key, paths in per_split.items()}
    problems = []
    for key, paths in per_split.items():
        missing, broken = _check_images(paths, check.open_images)
        for label, bad in (("missing", missing), ("unreadable", broken)):
            if bad:
                listed = ", ".join(bad[:MAX_LISTED]) + (f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED
                                                        else "")
                problems.append(f"{len(bad)} {label} {key} image(s): {listed}")
    wrong = {k: (counts.get(k), n) for k, n in check.counts.items() if counts.get(k) != n}
    if wrong:
        problems.append("per-split counts differ from the published ones: " +
                        ", ".join(f"{k} {got} (published {want})" for k, (got, want) in wrong.items()))
    if problems:
        raise VerificationError(f"{os.path.join(dataset_dir, check.path)}: " + "; ".join(problems))
    return counts


def verify_recipe(recipe: Recipe, root: str) -> Dict[str, int]:
    """Every check of ``recipe`` on ``root/<dataset_dir>`` (plus every file its downloads produce); the counts."""
    dataset_dir = os.path.join(root, recipe.dataset_dir)
    for item in recipe.downloads:
        for rel in item.produces:
            if rel != "." and not os.path.lexists(os.path.join(dataset_dir, rel)):
                raise VerificationError(f"{os.path.join(dataset_dir, rel)} is missing (from {item.source})")
    counts: Dict[str, int] = {}
    for check in recipe.checks:
        for key, n in run_check(dataset_dir, check).items():
            counts[key] = counts.get(key, 0) + n
    return counts
