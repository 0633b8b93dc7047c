"""Datum and DatasetBase with Dassl's attributes and methods, plus the shared image reader.

Few-shot sampling consumes python ``random`` exactly as Dassl does (labels in order of first
appearance, one ``random.sample`` per label), so a seed picks the same images under either engine.
Unlike Dassl, a class with fewer images than the requested shots is an error, not a silent shortfall.
"""
from __future__ import annotations

import os.path as osp
import random
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from PIL import Image

from dasslite.backend import BACKEND

__all__ = ["Datum", "DatasetBase", "read_image", "sample_per_class", "engine_datum_cls"]


class Datum:
    """One labelled image; immutable, and the image must exist when the Datum is made."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        if not osp.isfile(impath):
            raise FileNotFoundError(f"Image file not found: {impath!r}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def _key(self) -> tuple:
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
                f"classname={self._classname!r})")


def engine_datum_cls(datum_cls: Optional[type] = None) -> type:
    """The Datum class to build items with: the one given, else the active engine's (see dasslite.compat)."""
    if datum_cls is not None:
        return datum_cls
    if BACKEND == "dassl":  # pragma: no cover - exercised only where Dassl is installed
        from dassl.data.datasets import Datum as dassl_datum

        return dassl_datum
    return Datum


def read_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or unreadable file raises an error that names it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt or non-image files
        raise OSError(f"Cannot read image {path!r} ({type(exc).__name__}: {exc}); "
                      "the file is corrupt or not an image") from exc


def _describe_class(items: Sequence) -> str:
    first = items[0]
    name = getattr(first, "classname", "")
    return f"label {first.label} ({name!r})" if name else f"label {first.label}"


def sample_per_class(data_source: Iterable, num_shots: int, on_short: str = "error", where: str = "") -> list:
    """K items per label, labels in first-appearance order, drawing from python ``random`` as Dassl does.

    ``on_short`` says what a class with fewer than K items gets: ``"error"`` (ValueError naming the class),
    ``"all"`` (all its items, Dassl's ``repeat=False``) or ``"repeat"`` (``random.choices``, Dassl's ``repeat=True``).
    """
    if on_short not in ("error", "all", "repeat"):
        raise ValueError(f"on_short must be 'error', 'all' or 'repeat', got {on_short!r}")
    groups: Dict[int, list] = defaultdict(list)
    for item in data_source:
        groups[item.label].append(item)
    picked: list = []
    for items in groups.values():
        if len(items) >= num_shots:
            picked.extend(random.sample(items, num_shots))
        elif on_short == "repeat":
            picked.extend(random.choices(items, k=num_shots))
        elif on_short == "all":
            picked.extend(items)
        else:
            place = f" in {where}" if where else ""
            raise ValueError(
                f"Cannot draw {num_shots} shots: class {_describe_class(items)} has only {len(items)} "
                f"image(s){place}. Ask for at most {len(items)} shots (DATASET.NUM_SHOTS) or add images."
            )
    return picked


class DatasetBase:
    """Container of train_x / train_u / val / test lists of Datum, with Dassl's attributes and helpers."""

    dataset_dir = ""  # folder of the dataset under DATASET.ROOT; readers replace it by the absolute path
    domains: List[str] = []  # domain names, for domain-adaptation / generalisation datasets

    def __init__(self, train_x: Optional[list] = None, train_u: Optional[list] = None, val: Optional[list] = None,
                 test: Optional[list] = None) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> Optional[list]:
        return self._train_x

    @property
    def train_u(self) -> Optional[list]:
        return self._train_u

    @property
    def val(self) -> Optional[list]:
        return self._val

    @property
    def test(self) -> Optional[list]:
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Optional[Iterable]) -> int:
        """Largest label + 1 (so the label space stays fixed even when a class is missing)."""
        labels = {item.label for item in (data_source or [])}
        if not labels:
            raise ValueError("train_x is empty: the dataset reader produced no training items")
        return max(labels) + 1

    @staticmethod
    def get_lab2cname(data_source: Optional[Iterable]) -> Tuple[Dict[int, str], List[str]]:
        """Label -> class name and the class names sorted by label, both from ``data_source``."""
        mapping = {item.label: item.classname for item in (data_source or [])}
        labels = sorted(mapping)
        return {y: mapping[y] for y in labels}, [mapping[y] for y in labels]

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        """Both domain lists must be non-empty and known to this dataset."""
        if not source_domains:
            raise ValueError("source_domains (list) is empty")
        if not target_domains:
            raise ValueError("target_domains (list) is empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        """Raise ValueError naming the first domain this dataset does not have."""
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Not supported: this engine never downloads; fetch the data by hand into DATASET.ROOT."""
        raise NotImplementedError(f"Downloading is not supported; download {url} yourself and extract it to {dst}")

    def generate_fewshot_dataset(self, *data_sources: list, num_shots: int = -1, repeat: bool = False):
        """K images per class from each list (Dassl's sampling order); fewer than K is an error unless ``repeat``."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        on_short = "repeat" if repeat else "error"
        output = [sample_per_class(source, num_shots, on_short=on_short) for source in data_sources]
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source: Iterable) -> Dict[int, list]:
        """Group items by label, labels in order of first appearance."""
        output: Dict[int, list] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source: Iterable) -> Dict[int, list]:
        """Group items by domain, domains in order of first appearance."""
        output: Dict[int, list] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
