"""Prepare one dataset under a root: fetch each published file, extract it into the readers' layout, verify, mark.

Everything this writes lives under the root: the dataset folder, and ``<root>/.dasslite-prepare/`` with the
downloads (``.part`` files resume), scratch folders for extraction and a record of the finished steps. A dataset is
*ready* once its verification passed and ``<dataset>/.dasslite-prepared.json`` was written; a rerun verifies it
again and skips it. A step whose record or output is missing is redone from scratch (a half-extracted archive).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable, Dict, List, Optional

from ...utils.io import write_json_atomic
from .extract import ArchiveError, extract_into
from .fetch import DownloadError, fetch, free_bytes
from .recipes import Download, Recipe
from .verify import VerificationError, verify_recipe

__all__ = ["ManualStepRequired", "PrepareOptions", "prepare_dataset", "dataset_state", "WORK_DIR", "MARKER"]

WORK_DIR = ".dasslite-prepare"
MARKER = ".dasslite-prepared.json"


class ManualStepRequired(RuntimeError):
    """A file the user must fetch by hand (a licence); the message says what and where."""


class PrepareOptions:
    """Settings of one run: mirror, Drive URL template, archives kept, progress bars, free-space probe."""

    def __init__(self, mirror: str = "", drive_url: Optional[str] = None, keep_archives: bool = False,
                 progress: bool = True, space_probe: Callable[[str], int] = free_bytes, timeout: float = 60.0):
        self.mirror = mirror
        self.drive_url = drive_url
        self.keep_archives = keep_archives
        self.progress = progress
        self.space_probe = space_probe
        self.timeout = timeout


def _paths(recipe: Recipe, root: str) -> Dict[str, str]:
    work = os.path.join(root, WORK_DIR)
    return {"dataset": os.path.join(root, recipe.dataset_dir), "downloads": os.path.join(work, "downloads",
                                                                                        recipe.name),
            "scratch": os.path.join(work, "tmp", recipe.name), "steps": os.path.join(work, f"{recipe.name}.steps.json"),
            "marker": os.path.join(root, recipe.dataset_dir, MARKER)}


def _read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _tree_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def dataset_state(recipe: Recipe, root: str) -> Dict[str, object]:
    """``{"state": missing|partial|ready, "bytes": on disk, "counts": ...}`` without verifying (for ``--list``)."""
    root = os.path.abspath(os.path.expanduser(root))
    paths = _paths(recipe, root)
    size = sum(_tree_bytes(paths[k]) for k in ("dataset", "downloads"))
    marker = _read_json(paths["marker"])
    if marker.get("recipe") == recipe.name:
        return {"state": "ready", "bytes": size, "counts": marker.get("counts", {})}
    started = any(os.path.exists(paths[k]) for k in ("dataset", "downloads", "steps"))
    return {"state": "partial" if started else "missing", "bytes": size, "counts": {}}


def _step_key(item: Download) -> str:
    return f"{item.name}|{item.source}|{item.md5 or item.sha256}"


def _named_products(item: Download):
    """The dataset-relative paths a step is known to create (none for ``x/*`` moves: their names are the archive's)."""
    return [rel for rel in item.produces if rel != "."]


def _products_exist(item: Download, dataset_dir: str) -> bool:
    named = _named_products(item)
    return bool(named) and all(os.path.lexists(os.path.join(dataset_dir, rel)) for rel in named)


def _done(item: Download, steps: dict, dataset_dir: str) -> bool:
    """A step counts as done when it was recorded as finished and everything it is known to make is still there."""
    return isinstance(steps.get(_step_key(item)), float) and (not _named_products(item)
                                                               or _products_exist(item, dataset_dir))


def _copy_atomic(src: str, dst: str) -> None:
    tmp = dst + ".part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _run_step(item: Download, recipe: Recipe, root: str, paths: Dict[str, str], options: PrepareOptions) -> None:
    dataset_dir = paths["dataset"]
    os.makedirs(dataset_dir, exist_ok=True)
    local = os.path.join(root, item.copy_from) if item.copy_from else ""
    if local and os.path.isfile(local):
        print(f"[{recipe.name}] {item.name}: copying {local}")
        _copy_atomic(local, os.path.join(dataset_dir, item.dest or item.name))
        return
    target = os.path.join(paths["downloads"], item.name)
    print(f"[{recipe.name}] {item.name}: from {item.source}")
    fetch(item, target, drive_template=options.drive_url, timeout=options.timeout, progress=options.progress,
          space_factor=2.0 if item.is_archive else 1.0, space_probe=options.space_probe)
    if item.is_archive:
        print(f"[{recipe.name}] {item.name}: extracting into {dataset_dir}")
        try:
            extract_into(target, item.extract, dataset_dir, paths["scratch"])
        except ArchiveError as exc:
            os.remove(target)  # useless as it is; the next run fetches it afresh
            raise ArchiveError(f"{exc} [URL: {item.source}] The archive {target} was deleted: run the same command "
                               "again to download it afresh.") from exc
        if not options.keep_archives:
            os.remove(target)
    else:
        os.replace(target, os.path.join(dataset_dir, item.dest or item.name))


def _adopt_manual_folders(recipe: Recipe, dataset_dir: str) -> None:
    """Move folders the user put one level too high (``imagenet/train`` -> ``imagenet/images/train``)."""
    for rel in recipe.manual_paths:
        wanted, loose = os.path.join(dataset_dir, rel), os.path.join(dataset_dir, os.path.basename(rel))
        if rel != os.path.basename(rel) and os.path.isdir(loose) and not os.path.lexists(wanted):
            os.makedirs(os.path.dirname(wanted), exist_ok=True)
            os.replace(loose, wanted)
            print(f"[{recipe.name}] moved {loose} to {wanted}")


def prepare_dataset(recipe: Recipe, root: str, options: Optional[PrepareOptions] = None) -> Dict[str, int]:
    """Make ``root/<dataset_dir>`` a verified copy in the readers' layout; return its per-split counts."""
    options = options or PrepareOptions()
    recipe = recipe.relocated(options.mirror)
    root = os.path.abspath(os.path.expanduser(root))
    os.makedirs(root, exist_ok=True)
    paths = _paths(recipe, root)
    dataset_dir = paths["dataset"]
    if os.path.isfile(paths["marker"]) or (os.path.isdir(dataset_dir) and not os.path.exists(paths["steps"])):
        try:  # ready before, or placed there by hand: verify and skip
            counts = verify_recipe(recipe, root)
            write_json_atomic(paths["marker"], {"recipe": recipe.name, "counts": counts, "verified": time.time()})
            print(f"[{recipe.name}] ready: {dataset_dir} verified ({_format_counts(counts)}); skipped")
            return counts
        except VerificationError as exc:
            if os.path.isfile(paths["marker"]):
                print(f"[{recipe.name}] was marked ready but fails verification ({exc}); preparing it again")
                os.remove(paths["marker"])
                _forget_steps(paths["steps"])
    shutil.rmtree(paths["scratch"], ignore_errors=True)  # what an interrupted extraction left
    if recipe.manual:
        os.makedirs(dataset_dir, exist_ok=True)
        _adopt_manual_folders(recipe, dataset_dir)
    owned = os.path.exists(paths["steps"])  # else: a folder the user made, whose files are never replaced
    steps = _read_json(paths["steps"])
    for item in recipe.downloads:
        key = _step_key(item)
        if _done(item, steps, dataset_dir):
            continue
        if not owned and _products_exist(item, dataset_dir):
            print(f"[{recipe.name}] {item.name}: already in {dataset_dir}, kept")
        else:
            steps[key] = "started"  # a crash from here on leaves a step to redo, not a user folder to keep
            write_json_atomic(paths["steps"], steps)
            _run_step(item, recipe, root, paths, options)
        steps[key] = time.time()
        write_json_atomic(paths["steps"], steps)
    missing = [rel for rel in recipe.manual_paths if not os.path.isdir(os.path.join(dataset_dir, rel))]
    if missing:
        raise ManualStepRequired(f"[{recipe.name}] needs a manual download: " +
                                 recipe.manual.format(dataset_dir=dataset_dir))
    try:
        counts = verify_recipe(recipe, root)
    except VerificationError as exc:
        raise VerificationError(f"{exc}. If {dataset_dir} holds an incomplete copy of your own, delete it (or the "
                                "parts named) and run the same command again to download them.") from exc
    write_json_atomic(paths["marker"], {"recipe": recipe.name, "counts": counts, "verified": time.time()})
    shutil.rmtree(paths["scratch"], ignore_errors=True)
    print(f"[{recipe.name}] ready: {dataset_dir} ({_format_counts(counts)})")
    return counts


def _forget_steps(path: str) -> None:
    """Mark every recorded step as to be redone (a folder we made stays ours; a user's folder stays the user's)."""
    if os.path.exists(path):
        write_json_atomic(path, {key: "started" for key in _read_json(path)})


def _format_counts(counts: Dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in counts.items()) or "no counts"


def prepare_many(recipes: List[Recipe], root: str, options: Optional[PrepareOptions] = None) -> Dict[str, str]:
    """Prepare each recipe in turn; a failure is reported and the next dataset still runs. Name -> error ('' = ok)."""
    outcome = {}
    for recipe in recipes:
        try:
            prepare_dataset(recipe, root, options)
            outcome[recipe.name] = ""
        except (DownloadError, VerificationError, ManualStepRequired, RuntimeError, OSError) as exc:
            outcome[recipe.name] = f"{type(exc).__name__}: {exc}"
            print(f"[{recipe.name}] FAILED: {exc}")
    return outcome
