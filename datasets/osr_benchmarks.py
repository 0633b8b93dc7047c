"""The open-set benchmarks (Neal et al. -> Vaze et al. -> FSMoE), five known/unknown class splits each.

    CIFAR10OSR       6 CIFAR-10 classes known, the other 4 unknown      ``cifar-10-batches-py/``
    CIFARPlus10OSR   4 CIFAR-10 classes known, 10 CIFAR-100 unknown      + ``cifar-100-python/``
    CIFARPlus50OSR   4 CIFAR-10 classes known, 50 CIFAR-100 unknown
    TinyImageNetOSR  20 classes known, the other 180 unknown             ``tiny-imagenet-200/``

The folders are the standard downloads under DATASET.ROOT: torchvision's CIFAR python batches (pickled dicts with
``data`` [N, 3072] uint8 and ``labels`` / ``fine_labels``, names in ``batches.meta`` / ``meta``) and
``tiny-imagenet-200/`` (``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with
``val/val_annotations.txt``: file, WNID, box). ``OSR.SPLIT`` picks the split; the lists are data in
``datasets/osr_splits.json``. Known classes are relabelled 0..n-1 in the order of the split's list.

Test: the known classes' test images (TinyImageNet: its val images) against the unknown classes' test images
(``open_set_unknown``, read by ``dasslite.evaluation.open_set``). Validation (only for the macro-F1 threshold): the
last ``VAL_FRACTION`` of each class's training images (file order), held out of training; the unknown side of it
comes from the unknown classes' training images, which are never trained on. ``DATASET.NUM_SHOTS`` K >= 1 draws K
training images per known class (and min(K, 4) validation images, as Dassl) with the run's seed; -1 uses all.
CIFAR images are stored as arrays, so each one used is written once as a PNG under ``<cifar folder>/png/`` (atomic
writes; the folder must be writable), then read like every other image.
"""
from __future__ import annotations

import json
import os.path as osp
import pickle
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.base_dataset import engine_datum_cls, sample_per_class
from dasslite.data.datasets.layout import (list_class_dirs, list_files, read_lines, require_dir, require_file,
                                           resolve_root)
from dasslite.utils.io import write_atomic

SPLITS_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "osr_splits.json")
VAL_FRACTION = 0.1
VAL_MAX_SHOTS = 4
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
TINY_DIR = "tiny-imagenet-200"


class MalformedDatasetFile(ValueError):
    """A dataset file exists but does not hold what its format promises (the message names file and key)."""


def load_splits(path: str = SPLITS_FILE) -> Dict[str, List[List[int]]]:
    with open(path, encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def split_classes(name: str, split: int) -> List[int]:
    """The class list ``name`` (a key of osr_splits.json) of split ``split``; ValueError for another split."""
    lists = load_splits()[name]
    if not 0 <= split < len(lists):
        raise ValueError(f"OSR.SPLIT {split} is out of range: the benchmark has splits 0-{len(lists) - 1}")
    return list(lists[split])


# ------------------------------------------------------------------------------------------------------------
# CIFAR python batches
# ------------------------------------------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of lists, strings and numpy arrays) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def read_cifar_pickle(path: str, keys: Sequence[str]) -> dict:
    """A CIFAR batch/meta file as a dict with string keys; named errors for a missing or malformed file."""
    require_file(path, "CIFAR batch file (from the python version of the download, as torchvision's)")
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise MalformedDatasetFile(f"{path} is not a CIFAR python batch ({type(exc).__name__}: {exc}); "
                                   f"re-download the python version of the dataset") from exc
    if not isinstance(data, dict):
        raise MalformedDatasetFile(f"{path} holds a {type(data).__name__}, not the dict of a CIFAR batch")
    data = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}
    missing = [k for k in keys if k not in data]
    if missing:
        raise MalformedDatasetFile(f"{path} has no key(s) {missing} (keys: {sorted(data)})")
    return data


def read_cifar_images(paths: Sequence[str], label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(images [N, 32, 32, 3] uint8, labels [N])`` from CIFAR batch files, in file then row order."""
    images, labels = [], []
    for path in paths:
        batch = read_cifar_pickle(path, ("data", label_key))
        data, lab = np.asarray(batch["data"]), np.asarray(batch[label_key])
        if data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
            raise MalformedDatasetFile(f"{path}: 'data' has shape {data.shape} and '{label_key}' {len(lab)} entries; "
                                       f"expected [N, 3072] and N")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8))
        labels.append(lab.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


class CifarSource:
    """One CIFAR download: its train/test arrays and class names; images become PNGs on first use."""

    def __init__(self, folder: str, train_files: Sequence[str], test_file: str, meta_file: str, label_key: str,
                 names_key: str) -> None:
        self.folder = folder
        require_dir(folder, f"CIFAR folder '{osp.basename(folder)}'")
        meta = read_cifar_pickle(osp.join(folder, meta_file), (names_key,))
        self.classnames = [str(n) for n in meta[names_key]]
        self.arrays = {"train": read_cifar_images([osp.join(folder, f) for f in train_files], label_key),
                       "test": read_cifar_images([osp.join(folder, test_file)], label_key)}

    def png(self, part: str, index: int) -> str:
        """The PNG of image ``index`` of ``part`` (written once, atomically)."""
        path = osp.join(self.folder, "png", part, f"{index:05d}.png")
        if not osp.isfile(path):
            image = Image.fromarray(self.arrays[part][0][index])
            write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
        return path

    def indices(self, part: str, label: int) -> List[int]:
        return np.flatnonzero(self.arrays[part][1] == label).tolist()


def cifar10(root: str) -> CifarSource:
    return CifarSource(osp.join(root, CIFAR10_DIR), [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                       "batches.meta", "labels", "label_names")


def cifar100(root: str) -> CifarSource:
    return CifarSource(osp.join(root, CIFAR100_DIR), ["train"], "test", "meta", "fine_labels", "fine_label_names")


# ------------------------------------------------------------------------------------------------------------
# TinyImageNet
# ------------------------------------------------------------------------------------------------------------
class TinyImageNetSource:
    """``tiny-imagenet-200/``: classes = sorted ``train/`` WNID folders; test = ``val/`` by its annotations."""

    def __init__(self, root: str) -> None:
        self.folder = require_dir(osp.join(root, TINY_DIR), f"TinyImageNet folder '{TINY_DIR}'")
        train_dir = require_dir(osp.join(self.folder, "train"), "TinyImageNet train folder")
        self.wnids = list_class_dirs(train_dir)
        if not self.wnids:
            raise MalformedDatasetFile(f"{train_dir} has no class folders (train/<wnid>/images/*.JPEG)")
        words = self._words(osp.join(self.folder, "words.txt"))
        self.classnames = [words.get(w, w) for w in self.wnids]
        self.val_files = self._val_annotations(osp.join(self.folder, "val", "val_annotations.txt"))

    @staticmethod
    def _words(path: str) -> Dict[str, str]:
        """WNID -> its first name in ``words.txt`` (``wnid<TAB>name, name, ...``); optional file."""
        if not osp.isfile(path):
            return {}
        names = {}
        for n, line in enumerate(read_lines(path, "TinyImageNet words.txt"), 1):
            parts = line.split("\t")
            if len(parts) < 2:
                raise MalformedDatasetFile(f"{path} line {n}: expected 'wnid<TAB>names', got {line!r}")
            names[parts[0]] = parts[1].split(",")[0].strip()
        return names

    def _val_annotations(self, path: str) -> Dict[str, List[str]]:
        """WNID -> its val image paths (annotation order)."""
        by_class: Dict[str, List[str]] = {w: [] for w in self.wnids}
        for n, line in enumerate(read_lines(path, "TinyImageNet val annotations (val/val_annotations.txt)"), 1):
            parts = line.split("\t")
            if len(parts) < 2:
                raise MalformedDatasetFile(f"{path} line {n}: expected 'file<TAB>wnid<TAB>box', got {line!r}")
            if parts[1] not in by_class:
                raise MalformedDatasetFile(f"{path} line {n}: WNID {parts[1]!r} has no train/ folder")
            by_class[parts[1]].append(osp.join(self.folder, "val", "images", parts[0]))
        return by_class

    def train_files(self, wnid: str) -> List[str]:
        folder = require_dir(osp.join(self.folder, "train", wnid, "images"), f"TinyImageNet images of {wnid}")
        return [osp.join(folder, f) for f in list_files(folder)]


# ------------------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------------------
def hold_out(items: list) -> Tuple[list, list]:
    """``(train, val)``: the last ``VAL_FRACTION`` of a class's items (at least one) is validation."""
    n_val = max(1, int(round(len(items) * VAL_FRACTION))) if len(items) > 1 else 0
    return items[: len(items) - n_val], items[len(items) - n_val:]


class OpenSetBenchmark(DatasetBase):
    """Builds train/val/test of the known classes and ``open_set_unknown`` from per-class image lists."""

    def build(self, cfg, known: List[Tuple[str, List[str], List[str]]],
              unknown: List[Tuple[str, List[str], List[str]]]) -> None:
        """``known``: (class name, training image paths, test image paths) per class, in label order; ``unknown``:
        (class name, held-out training image paths, test image paths)."""
        datum = engine_datum_cls()
        train, val, test = [], [], []
        for label, (name, train_paths, test_paths) in enumerate(known):
            fit, held = hold_out(train_paths)
            train.append([datum(impath=p, label=label, classname=name) for p in fit])
            val.append([datum(impath=p, label=label, classname=name) for p in held])
            test += [datum(impath=p, label=label, classname=name) for p in test_paths]
        shots = cfg.DATASET.NUM_SHOTS
        train_x, val_x = sum(train, []), sum(val, [])
        unknown_test, unknown_val = [], []
        for label, (name, held_paths, test_paths) in enumerate(unknown):
            unknown_test += [datum(impath=p, label=label, classname=name) for p in test_paths]
            unknown_val += [datum(impath=p, label=label, classname=name) for p in held_paths]
        if shots >= 1:  # Dassl's order: train, then val with min(K, 4)-or-all per class
            train_x = self.generate_fewshot_dataset(train_x, num_shots=shots)
            val_x = sample_per_class(val_x, min(shots, VAL_MAX_SHOTS), on_short="all")
            unknown_val = sample_per_class(unknown_val, min(shots, VAL_MAX_SHOTS), on_short="all")
        self.open_set_unknown = {"test": unknown_test, "val": unknown_val, "classnames": [u[0] for u in unknown]}
        super().__init__(train_x=train_x, val=val_x, test=test)


def _cifar_class(source: CifarSource, label: int) -> Tuple[str, List[str], List[str]]:
    """A known class: its training and test images."""
    train = [source.png("train", i) for i in source.indices("train", label)]
    return source.classnames[label], train, [source.png("test", i) for i in source.indices("test", label)]


def _cifar_unknown(source: CifarSource, label: int) -> Tuple[str, List[str], List[str]]:
    """An unknown class: the held-out part of its training images (validation) and its test images."""
    held = hold_out(source.indices("train", label))[1]
    return (source.classnames[label], [source.png("train", i) for i in held],
            [source.png("test", i) for i in source.indices("test", label)])


@DATASET_REGISTRY.register()
class CIFAR10OSR(OpenSetBenchmark):
    """CIFAR10 6 known / 4 unknown (``cifar10_known``)."""

    def __init__(self, cfg):
        known = split_classes("cifar10_known", cfg.OSR.SPLIT)
        source = cifar10(resolve_root(cfg))
        unknown = [c for c in range(10) if c not in known]
        self.build(cfg, [_cifar_class(source, c) for c in known], [_cifar_unknown(source, c) for c in unknown])


class _CIFARPlus(OpenSetBenchmark):
    UNKNOWN_KEY = ""

    def __init__(self, cfg):
        known = split_classes("cifar_plus_known", cfg.OSR.SPLIT)
        unknown = split_classes(self.UNKNOWN_KEY, cfg.OSR.SPLIT)
        root = resolve_root(cfg)
        source10, source100 = cifar10(root), cifar100(root)
        self.build(cfg, [_cifar_class(source10, c) for c in known],
                   [_cifar_unknown(source100, c) for c in unknown])


@DATASET_REGISTRY.register()
class CIFARPlus10OSR(_CIFARPlus):
    """4 CIFAR-10 classes known, 10 CIFAR-100 classes unknown."""

    UNKNOWN_KEY = "cifar_plus10_unknown"


@DATASET_REGISTRY.register()
class CIFARPlus50OSR(_CIFARPlus):
    """4 CIFAR-10 classes known, 50 CIFAR-100 classes unknown."""

    UNKNOWN_KEY = "cifar_plus50_unknown"


@DATASET_REGISTRY.register()
class TinyImageNetOSR(OpenSetBenchmark):
    """20 known / 180 unknown TinyImageNet classes; test = the val images (50 per class)."""

    def __init__(self, cfg):
        known = split_classes("tinyimagenet_known", cfg.OSR.SPLIT)
        source = TinyImageNetSource(resolve_root(cfg))
        if max(known) >= len(source.wnids):
            raise MalformedDatasetFile(f"{source.folder}/train has {len(source.wnids)} class folders; split "
                                       f"{cfg.OSR.SPLIT} needs class index {max(known)} (the full 200 classes)")
        unknown = [c for c in range(len(source.wnids)) if c not in known]

        def entry(c: int, held_out_only: bool = False) -> Tuple[str, List[str], List[str]]:
            wnid = source.wnids[c]
            train = source.train_files(wnid)
            return source.classnames[c], hold_out(train)[1] if held_out_only else train, source.val_files[wnid]

        self.build(cfg, [entry(c) for c in known], [entry(c, held_out_only=True) for c in unknown])
