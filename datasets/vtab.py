"""VTAB-1k (19 tasks) in the common ``vtab-1k/<task>/`` layout (VPT / NOAH release).

``DATASET.ROOT/vtab-1k/<task>/`` holds the images and four lists, one ``relative/path label`` per line (path relative
to the task folder, integer label): ``train800val200.txt`` (the 1,000 training images), ``train800.txt``,
``val200.txt`` and ``test.txt``. ``DATASET.VTAB_TASK`` picks the task; ``DATASET.VTAB_PROTOCOL`` ``final`` trains on
train800val200 and tests on test (the reported numbers), ``tune`` trains on train800 and tests on val200
(hyper-parameter search). Class names are not part of the release: classes are named ``class <i>``, so VTAB-1k is
a task for the linear head (``TRAINER.PMOE.HEAD linear``). Few-shot sampling and class subsampling do not apply.
"""
from __future__ import annotations

import os.path as osp
from typing import List

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import require_dir, require_file, resolve_root
from dasslite.prompting.config import register_config
from dasslite.vtab import VTAB_TASKS

VTAB_PROTOCOLS = {"final": ("train800val200.txt", "test.txt"), "tune": ("train800.txt", "val200.txt")}


class VtabListError(ValueError):
    """A malformed line in a VTAB-1k list file (the message names the file, the line number and the line)."""


@register_config
def add_vtab_config(cfg) -> None:
    cfg.DATASET.VTAB_TASK = ""  # one of VTAB_TASKS, e.g. dtd
    cfg.DATASET.VTAB_PROTOCOL = "final"  # final: train800val200 -> test | tune: train800 -> val200


def read_vtab_list(task_dir: str, filename: str, num_classes: int) -> List[Datum]:
    """The ``relative/path label`` lines of ``task_dir/filename`` as Datum (every image must exist)."""
    path = require_file(osp.join(task_dir, filename), f"VTAB-1k list {filename!r}")
    items = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise VtabListError(f"{path}, line {number}: expected 'relative/path label', got {line!r}")
            relpath, label = parts[0], int(parts[1])
            if not 0 <= label < num_classes:
                raise VtabListError(f"{path}, line {number}: label {label} is outside 0..{num_classes - 1} for "
                                    f"this task ({num_classes} classes)")
            impath = osp.join(task_dir, relpath)
            if not osp.isfile(impath):
                raise FileNotFoundError(f"{path}, line {number}: image {relpath!r} not found ({impath})")
            items.append(Datum(impath=impath, label=label, classname=f"class {label}"))
    if not items:
        raise VtabListError(f"{path} lists no images")
    return items


@DATASET_REGISTRY.register()
class VTAB1k(DatasetBase):
    """One VTAB-1k task (``DATASET.VTAB_TASK``) under ``DATASET.ROOT/vtab-1k/``."""

    dataset_dir = "vtab-1k"

    def __init__(self, cfg):
        task = getattr(cfg.DATASET, "VTAB_TASK", "")
        if task not in VTAB_TASKS:
            raise ValueError(f"DATASET.VTAB_TASK {task!r} is not a VTAB-1k task; one of: {', '.join(VTAB_TASKS)}")
        protocol = getattr(cfg.DATASET, "VTAB_PROTOCOL", "final")
        if protocol not in VTAB_PROTOCOLS:
            raise ValueError(f"DATASET.VTAB_PROTOCOL {protocol!r} is not one of {', '.join(VTAB_PROTOCOLS)}")
        if cfg.DATASET.NUM_SHOTS > 0 or getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all") != "all":
            raise ValueError("VTAB-1k has fixed 1k-image training sets: leave DATASET.NUM_SHOTS at -1/0 and "
                             "DATASET.SUBSAMPLE_CLASSES all")
        root = require_dir(osp.join(resolve_root(cfg), self.dataset_dir), "VTAB-1k folder 'vtab-1k'")
        task_dir = require_dir(osp.join(root, task), f"VTAB-1k task folder {task!r}")
        self.dataset_dir = self.image_dir = task_dir
        train_list, test_list = VTAB_PROTOCOLS[protocol]
        num_classes = VTAB_TASKS[task]
        train = read_vtab_list(task_dir, train_list, num_classes)
        test = read_vtab_list(task_dir, test_list, num_classes)
        super().__init__(train_x=train, val=test, test=test)
        # every class of the task, also those absent from a (tiny) training list
        self._num_classes = num_classes
        self._lab2cname = {i: f"class {i}" for i in range(num_classes)}
        self._classnames = [self._lab2cname[i] for i in range(num_classes)]
