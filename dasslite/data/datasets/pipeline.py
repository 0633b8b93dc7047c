"""The one reader pipeline: locate folders -> split (file or generated) -> few-shot (cached) -> base/new subsample.

Readers call ``locate_dataset`` then ``build_splits`` and pass the result to ``DatasetBase.__init__``.
Nothing here depends on which engine is active, so readers work under the built-in engine and Dassl.
"""
from __future__ import annotations

import os.path as osp
from typing import Callable, Optional

from .fewshot import fewshot_train_val, subsample_classes
from .layout import require_dir, resolve_root
from .split_checks import validate_split
from .splits import Splits, load_or_create_split

__all__ = ["locate_dataset", "build_splits", "fewshot_and_subsample", "subsample_setting"]


def locate_dataset(reader, cfg, image_subdir: Optional[str] = None) -> None:
    """Set ``reader.dataset_dir`` (``ROOT/<class attr dataset_dir>``), ``image_dir`` and ``split_fewshot_dir``.

    Both folders must exist; ``image_subdir=None`` makes ``image_dir`` the dataset folder itself.
    """
    name = type(reader).__name__
    folder = type(reader).dataset_dir
    dataset_dir = require_dir(osp.join(resolve_root(cfg), folder), f"{name} dataset folder '{folder}'")
    reader.dataset_dir = dataset_dir
    reader.image_dir = dataset_dir
    if image_subdir:
        reader.image_dir = require_dir(osp.join(dataset_dir, image_subdir), f"{name} image folder '{image_subdir}'")
    reader.split_fewshot_dir = osp.join(dataset_dir, "split_fewshot")


def subsample_setting(cfg) -> str:
    """``DATASET.SUBSAMPLE_CLASSES``, or "all" when the config does not declare it."""
    return getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")


def fewshot_and_subsample(reader, cfg, train: list, val: Optional[list], test: list) -> Splits:
    """Check the split, then apply ``DATASET.NUM_SHOTS`` (cached in ``reader.dataset_dir``) and the subsample."""
    validate_split(train, val, test, getattr(reader, "split_path", None) or reader.dataset_dir)
    train, val = fewshot_train_val(reader.dataset_dir, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED)
    if val is None:
        train, test = subsample_classes(train, test, subsample=subsample_setting(cfg))
        return train, None, test
    train, val, test = subsample_classes(train, val, test, subsample=subsample_setting(cfg))
    return train, val, test


def build_splits(reader, cfg, create: Callable[[], Splits], split_file: Optional[str] = None,
                 relative_to_dataset_dir: bool = False) -> Splits:
    """Full pipeline for a located reader: read ``split_file`` (or ``create()`` and save it), few-shot, subsample.

    ``split_file=None`` means the split comes from ``create()`` every time (e.g. FGVCAircraft's txt files).
    Split paths are relative to ``reader.image_dir`` unless ``relative_to_dataset_dir``.
    """
    if split_file is None:
        train, val, test = create()
    else:
        reader.split_path = osp.join(reader.dataset_dir, split_file)
        prefix = reader.dataset_dir if relative_to_dataset_dir else reader.image_dir
        train, val, test = load_or_create_split(reader.split_path, prefix, create)
    return fewshot_and_subsample(reader, cfg, train, val, test)
