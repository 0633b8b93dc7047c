"""ImageNet: ``imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``classnames.txt``; lists cached in ``preprocessed.pkl``.

Also the shared pieces of the test-only ImageNet variants (class-name file, folder-per-class reading).
"""
import os.path as osp
from collections import OrderedDict
from typing import List, Sequence

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.fewshot import load_datum_pickle, save_datum_pickle
from dasslite.data.datasets.layout import list_class_dirs, list_files, lookup, read_lines, require_dir
from dasslite.data.datasets.pipeline import fewshot_and_subsample, locate_dataset


def read_classnames(text_file: str) -> "OrderedDict[str, str]":
    """``classnames.txt`` (lines ``<wnid> <class name>``) as an ordered wnid -> class-name mapping."""
    classnames = OrderedDict()
    for n, line in enumerate(read_lines(text_file, "ImageNet class-name file"), start=1):
        folder, _, name = line.partition(" ")
        if not name:
            raise ValueError(f"{text_file}, line {n}: expected '<wnid> <class name>', got {line!r}")
        classnames[folder] = name
    return classnames


def read_class_folders(image_dir: str, folders: Sequence[str], classnames: Sequence[str]) -> List:
    """Every image of ``image_dir/<folders[i]>`` as label ``i`` named ``classnames[i]`` (files in sorted order)."""
    items = []
    for label, (folder, classname) in enumerate(zip(folders, classnames)):
        class_dir = osp.join(image_dir, folder)
        require_dir(class_dir, f"Class folder of {classname!r}")
        items.extend(Datum(impath=osp.join(class_dir, name), label=label, classname=classname)
                     for name in list_files(class_dir))
    return items


def named_folders(image_dir: str, classnames: dict, source: str, ignored: Sequence[str] = ()) -> tuple:
    """Sorted wnid folders of ``image_dir`` (minus ``ignored``) and their class names from ``source``."""
    folders = list_class_dirs(image_dir, ignored=ignored)
    if not folders:
        raise FileNotFoundError(f"No class folders in {image_dir}")
    return folders, [lookup(classnames, f, f"{image_dir} (no such wnid in {source})") for f in folders]


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    """1000 classes; the official val set is the test set and also serves as val."""

    dataset_dir = "imagenet"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "images")
        self.preprocessed = osp.join(self.dataset_dir, "preprocessed.pkl")
        if osp.exists(self.preprocessed):
            print(f"Loading preprocessed data from {self.preprocessed}")
            data = load_datum_pickle(self.preprocessed, ("train", "test"), check="ends")
            train, test = data["train"], data["test"]
        else:
            classnames = read_classnames(osp.join(self.dataset_dir, "classnames.txt"))
            train, test = self.read_data(classnames, "train"), self.read_data(classnames, "val")
            save_datum_pickle(self.preprocessed, {"train": train, "test": test})
        train, _, test = fewshot_and_subsample(self, cfg, train, None, test)
        super().__init__(train_x=train, val=test, test=test)

    @staticmethod
    def read_classnames(text_file: str) -> "OrderedDict[str, str]":
        """Same as the module-level ``read_classnames`` (kept as a static method, as callers expect)."""
        return read_classnames(text_file)

    def read_data(self, classnames: dict, split_dir: str) -> list:
        """All images of ``images/<split_dir>``; label = index of the sorted wnid folder."""
        image_dir = require_dir(osp.join(self.image_dir, split_dir), f"ImageNet {split_dir} folder")
        source = osp.join(self.dataset_dir, "classnames.txt")
        return read_class_folders(image_dir, *named_folders(image_dir, classnames, source))


class ImageNetTestOnly(DatasetBase):
    """Base of the test-only ImageNet variants: ``train_x = test = data``, no val, no few-shot or subsample."""

    image_subdir = ""

    def __init__(self, cfg):
        locate_dataset(self, cfg, self.image_subdir)
        self.classnames_file = osp.join(self.dataset_dir, "classnames.txt")
        folders, names = self.class_folders(read_classnames(self.classnames_file))
        data = read_class_folders(self.image_dir, folders, names)
        super().__init__(train_x=data, test=data)

    def class_folders(self, classnames: dict) -> tuple:
        """Folder names in label order and their class names (default: sorted wnid folders)."""
        return named_folders(self.image_dir, classnames, self.classnames_file)
