"""Few-shot sampling with its ``split_fewshot/shot_{K}-seed_{SEED}.pkl`` cache, and base/new class subsampling.

The cache is keyed only by (K, SEED), as in the lineage, so base and new runs share one sample. A cache
is checked when loaded: unreadable, malformed, stale (images moved) or built from another split is an
error that names the pickle and says to delete it.
"""
from __future__ import annotations

import math
import os.path as osp
import pickle
from typing import Dict, List, Optional, Sequence, Tuple

from ...utils.io import write_atomic
from .base_dataset import Datum as BuiltinDatum
from .base_dataset import engine_datum_cls, sample_per_class

__all__ = ["fewshot_cache_path", "load_datum_pickle", "save_datum_pickle", "fewshot_train_val",
           "subsample_classes", "VAL_MAX_SHOTS"]

VAL_MAX_SHOTS = 4  # val gets min(K, 4) shots per class
_DASSL_DATUM = ("dassl.data.datasets.base_dataset", "Datum")


def fewshot_cache_path(dataset_dir: str, num_shots: int, seed: int) -> str:
    """``<dataset_dir>/split_fewshot/shot_{K}-seed_{SEED}.pkl``."""
    return osp.join(dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.pkl")


class _Unpickler(pickle.Unpickler):
    """Reads caches written under either engine; Dassl's Datum maps to ours when Dassl is not installed."""

    def find_class(self, module: str, name: str):
        if (module, name) == _DASSL_DATUM:
            try:
                return super().find_class(module, name)
            except ImportError:
                return BuiltinDatum
        return super().find_class(module, name)


def _stale(path: str, problem: str) -> ValueError:
    return ValueError(f"Cached data {path} {problem}. Delete {path} so it is rebuilt.")


def load_datum_pickle(path: str, keys: Sequence[str], datum_cls: Optional[type] = None,
                      check: str = "all") -> Dict[str, list]:
    """Load ``{key: [Datum, ...]}`` from a cache pickle, re-made as ``datum_cls``; ``check``: "all" or "ends" paths."""
    datum_cls = engine_datum_cls(datum_cls)
    try:
        with open(path, "rb") as f:
            data = _Unpickler(f).load()
    except Exception as exc:
        raise _stale(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise _stale(path, f"does not hold the keys {list(keys)}")
    out = {}
    for key in keys:
        items = data[key]
        if not isinstance(items, list) or not all(hasattr(x, "impath") and hasattr(x, "label") for x in items):
            raise _stale(path, f"has a malformed {key!r} list")
        to_check = items if check == "all" else items[:1] + items[-1:]
        for item in to_check:
            if not osp.isfile(item.impath):
                raise FileNotFoundError(f"Cached data {path} lists an image that no longer exists: {item.impath} "
                                        f"(was DATASET.ROOT moved?). Delete {path} so it is rebuilt.")
        out[key] = [x if type(x) is datum_cls else
                    datum_cls(impath=x.impath, label=x.label, domain=x.domain, classname=x.classname) for x in items]
    return out


def save_datum_pickle(path: str, payload: Dict[str, list]) -> None:
    """Pickle ``payload`` atomically (temp file + rename), creating the folder."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)

    write_atomic(path, write)


def fewshot_train_val(dataset_dir: str, train: list, val: Optional[list], num_shots: int, seed: int,
                      datum_cls: Optional[type] = None) -> Tuple[list, Optional[list]]:
    """K shots of train and min(K, 4) of val (val None: train only), from the cache or sampled and cached.

    Train classes with fewer than K images are an error naming the class; a val class with fewer than
    min(K, 4) keeps all its images (as in the lineage: val only selects models).
    """
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, seed)
    if seed < 0:
        print(f"Note: SEED is {seed}, so this few-shot sample is unseeded yet cached as {path} and reused by every "
              "later run without a seed; pass --seed to choose the sample")
    keys = ("train",) if val is None else ("train", "val")
    if osp.exists(path):
        print(f"Loading preprocessed few-shot data from {path}")
        data = load_datum_pickle(path, keys, datum_cls=datum_cls)
        if {x.label for x in data["train"]} != {x.label for x in train}:
            raise _stale(path, "covers other classes than the current split (was the split file changed?)")
        return data["train"], data.get("val")
    print(f"Creating a {num_shots}-shot dataset")
    train = sample_per_class(train, num_shots, on_short="error", where=f"the train split of {dataset_dir}")
    payload = {"train": train}
    if val is not None:
        val = sample_per_class(val, min(num_shots, VAL_MAX_SHOTS), on_short="all")
        payload["val"] = val
    print(f"Saving preprocessed few-shot data to {path}")
    save_datum_pickle(path, payload)
    return train, val


def subsample_classes(*args: list, subsample: str = "all") -> List[list]:
    """Keep base (first ceil(n/2) labels of the FIRST list) or new (the rest) classes in every list, relabelled 0..

    Items are rebuilt with their own class (so either engine's Datum works); ``"all"`` returns the lists as given.
    """
    if subsample not in ("all", "base", "new"):
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be 'all', 'base' or 'new', got {subsample!r}")
    if subsample == "all":
        return list(args)
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {y: i for i, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [[type(item)(impath=item.impath, label=relabeler[item.label], classname=item.classname)
             for item in items if item.label in relabeler] for items in args]
