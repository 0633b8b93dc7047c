"""Few-shot sampling with its ``split_fewshot/shot_{K}-seed_{SEED}.pkl`` cache, and base/new class subsampling.

The cache file name is keyed only by (K, SEED), as in the lineage, so base and new runs share one sample, and it
is written in Dassl's format (``{"train": [...], "val": [...]}`` of ``dassl...base_dataset.Datum``), so a CoOp fork
reads our caches and we read theirs. Unlike the lineage, a cache is tied to the split it was drawn from and to
its dataset folder: ours record both (a key Dassl ignores), and every cache's items must be items of the current
split. A cache drawn from another version of the split is rebuilt, with a warning; one whose dataset folder was
copied or moved is re-based onto the current folder (same sample); an unreadable or malformed one is an error
that names the pickle and says to delete it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from .base_dataset import engine_datum_cls, sample_per_class
from .datum_pickle import SOURCE_KEY, dump_dassl_format, load_datum_file

__all__ = ["fewshot_cache_path", "load_datum_pickle", "save_datum_pickle", "fewshot_train_val",
           "subsample_classes", "split_digest", "VAL_MAX_SHOTS"]

VAL_MAX_SHOTS = 4  # val gets min(K, 4) shots per class
CACHE_FORMAT = 1


def fewshot_cache_path(dataset_dir: str, num_shots: int, seed: int) -> str:
    """``<dataset_dir>/split_fewshot/shot_{K}-seed_{SEED}.pkl``."""
    return osp.join(dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.pkl")


def _stale(path: str, problem: str) -> ValueError:
    return ValueError(f"Cached data {path} {problem}. Delete {path} so it is rebuilt.")


def _read_lists(path: str, keys: Sequence[str]) -> dict:
    """The unpickled dict with ``keys`` checked to be lists of Datum-like items (else ValueError naming the file)."""
    try:
        data = load_datum_file(path)
    except Exception as exc:
        raise _stale(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise _stale(path, f"does not hold the keys {list(keys)}")
    for key in keys:
        items = data[key]
        if not isinstance(items, list) or not all(hasattr(x, "impath") and hasattr(x, "label") for x in items):
            raise _stale(path, f"has a malformed {key!r} list")
    return data


def load_datum_pickle(path: str, keys: Sequence[str], datum_cls: Optional[type] = None,
                      check: str = "all") -> Dict[str, list]:
    """Load ``{key: [Datum, ...]}`` from a cache pickle, re-made as ``datum_cls``; ``check``: "all" or "ends" paths."""
    datum_cls = engine_datum_cls(datum_cls)
    data = _read_lists(path, keys)
    out = {}
    for key in keys:
        items = data[key]
        to_check = items if check == "all" else items[:1] + items[-1:]
        for item in to_check:
            if not osp.isfile(item.impath):
                raise FileNotFoundError(f"Cached data {path} lists an image that no longer exists: {item.impath} "
                                        f"(was DATASET.ROOT moved?). Delete {path} so it is rebuilt.")
        out[key] = [x if type(x) is datum_cls else
                    datum_cls(impath=x.impath, label=x.label, domain=x.domain, classname=x.classname) for x in items]
    return out


def save_datum_pickle(path: str, payload: Dict[str, object]) -> None:
    """Pickle ``payload`` in Dassl's format, atomically (temp file + rename), creating the folder."""
    dump_dassl_format(path, payload)


def _relative(impath: str, dataset_dir: str) -> str:
    base = osp.join(dataset_dir, "")
    return impath[len(base):] if impath.startswith(base) else impath


def _item_key(item, dataset_dir: str) -> tuple:
    return _relative(item.impath, dataset_dir), int(item.label), item.classname


def split_digest(dataset_dir: str, train: list, val: Optional[list]) -> str:
    """sha256 of the split's train and val lists (paths relative to ``dataset_dir``, labels, class names)."""
    content = {"train": [_item_key(x, dataset_dir) for x in train],
               "val": None if val is None else [_item_key(x, dataset_dir) for x in val]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _match_cached(path: str, cached: list, current: list, key: str, cached_dir: str, dataset_dir: str):
    """The current split's items for the cached ones (matched on relative path, label, class name), or a problem."""
    index = {_item_key(x, dataset_dir): x for x in current}
    matched, missing = [], []
    for item in cached:
        hit = index.get(_item_key(item, cached_dir))
        (matched if hit is not None else missing).append(hit if hit is not None else item)
    if missing:
        return None, (f"lists {len(missing)} of its {len(cached)} {key!r} images that are not {key} images of the "
                      f"current split (e.g. {missing[0].impath}, label {missing[0].label})")
    return matched, None


def _check_cache(path: str, data: dict, keys: Sequence[str], train: list, val: Optional[list], dataset_dir: str,
                 digest: str) -> Tuple[Optional[Dict[str, list]], Optional[str], Optional[str]]:
    """``(lists, problem, moved_from)``: the cache's lists as items of the current split, else why it does not fit."""
    source = data.get(SOURCE_KEY)
    cached_dir = dataset_dir
    if isinstance(source, dict):
        if source.get("split_digest") != digest:
            return None, ("was drawn from another version of the split (its split digest "
                          f"{str(source.get('split_digest'))[:12]}, the current split's {digest[:12]}): the split "
                          "file was regenerated or edited since"), None
        cached_dir = str(source.get("dataset_dir") or dataset_dir)
    out = {}
    for key, current in (("train", train), ("val", val)):
        if key not in keys:
            continue
        out[key], problem = _match_cached(path, data[key], current, key, cached_dir, dataset_dir)
        if problem:
            return None, problem, None
    if {x.label for x in out["train"]} != {x.label for x in train}:
        return None, "covers other classes than the current split (was the split file changed?)", None
    return out, None, (cached_dir if cached_dir != dataset_dir else None)


def _write_cache(path: str, lists: Dict[str, list], dataset_dir: str, digest: str, num_shots: int,
                 seed: int) -> None:
    payload: Dict[str, object] = dict(lists)
    payload[SOURCE_KEY] = {"format": CACHE_FORMAT, "split_digest": digest, "dataset_dir": dataset_dir,
                           "num_shots": num_shots, "seed": seed}
    save_datum_pickle(path, payload)


def fewshot_train_val(dataset_dir: str, train: list, val: Optional[list], num_shots: int,
                      seed: int) -> Tuple[list, Optional[list]]:
    """K shots of train and min(K, 4) of val (val None: train only), from the cache or sampled and cached.

    Train classes with fewer than K images are an error naming the class; a val class with fewer than
    min(K, 4) keeps all its images (as in the lineage: val only selects models). ``num_shots`` 0 is an error
    (the lineage's "all images" is any negative value, e.g. -1). A cache that does not fit the current split is
    rebuilt (a warning says why); one made for a dataset folder that was since copied or moved is re-based.
    Cached items are returned as the current split's own items (so as the active engine's Datum).
    """
    if num_shots == 0:
        raise ValueError("DATASET.NUM_SHOTS is 0: ask for at least 1 shot per class, or -1 for all training images")
    if num_shots < 0:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, seed)
    if seed < 0:
        print(f"Note: SEED is {seed}, so this few-shot sample is unseeded yet cached as {path} and reused by every "
              "later run without a seed; pass --seed to choose the sample")
    keys = ("train",) if val is None else ("train", "val")
    digest = split_digest(dataset_dir, train, val)
    if osp.exists(path):
        print(f"Loading preprocessed few-shot data from {path}")
        lists, problem, moved_from = _check_cache(path, _read_lists(path, keys), keys, train, val, dataset_dir, digest)
        if problem is None:
            if moved_from is not None:
                print(f"Note: few-shot cache {path} was written for the dataset folder {moved_from}; the same sample "
                      f"is used from {dataset_dir} (cache rewritten with the new paths)")
                _write_cache(path, lists, dataset_dir, digest, num_shots, seed)
            return lists["train"], lists.get("val")
        print(f"WARNING: few-shot cache {path} {problem}. It is rebuilt from the current split now; runs that used "
              "the old cache trained on another sample.")
    print(f"Creating a {num_shots}-shot dataset")
    train = sample_per_class(train, num_shots, on_short="error", where=f"the train split of {dataset_dir}")
    lists = {"train": train}
    if val is not None:
        val = sample_per_class(val, min(num_shots, VAL_MAX_SHOTS), on_short="all")
        lists["val"] = val
    print(f"Saving preprocessed few-shot data to {path}")
    _write_cache(path, lists, dataset_dir, digest, num_shots, seed)
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
