"""Checks a split must pass before it is sampled or subsampled: a bad split silently changes the protocol.

A class missing from train shifts the base/new halves (they are cut on train's labels) and drops its test images
from both; a label outside 0..n-1 or a label with two names breaks the label -> class-name table; an image in two
lists leaks test data into training. Each is an error naming the split source, the class and the fix.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Sequence

__all__ = ["validate_split"]


def _name(label, names: Dict[int, set]) -> str:
    return f"label {label} ({', '.join(repr(n) for n in sorted(names.get(label, ())))})"


def validate_split(train: Sequence, val: Optional[Sequence], test: Sequence, source: str) -> None:
    """Raise ValueError when the split in ``source`` has a class-set, label or overlap problem (see module doc)."""
    lists = {"train": train, "val": val, "test": test}
    present = {key: items for key, items in lists.items() if items}
    if not train:
        raise ValueError(f"Split {source}: the train list is empty; every class needs train images")
    names: Dict[int, set] = defaultdict(set)
    labels_of: Dict[str, set] = {}
    for key, items in present.items():
        labels_of[key] = set()
        for item in items:
            label = item.label
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f"Split {source}: {key} image {item.impath} has label {label!r}, not an integer")
            names[label].add(item.classname)
            labels_of[key].add(label)
    for label, cnames in sorted(names.items()):
        if len(cnames) > 1:
            raise ValueError(f"Split {source}: {_name(label, names)} has more than one class name; each label must "
                             "have exactly one name in every list (fix the names in the split file)")
    by_name: Dict[str, List[int]] = defaultdict(list)
    for label, cnames in names.items():
        by_name[next(iter(cnames))].append(label)
    for cname, labels in by_name.items():
        if len(labels) > 1:
            raise ValueError(f"Split {source}: class name {cname!r} is used by labels {sorted(labels)}; each class "
                             "needs one label (fix the labels in the split file)")
    all_labels = sorted(names)
    expected = list(range(len(all_labels)))
    if all_labels != expected:
        outside = [y for y in all_labels if y not in expected]
        raise ValueError(f"Split {source}: labels must be 0..{len(all_labels) - 1} for its {len(all_labels)} "
                         f"classes, but {_name(outside[0], names)} is out of that range (labels found: "
                         f"{all_labels[:12]}{' ...' if len(all_labels) > 12 else ''}); renumber the labels")
    for key, labels in labels_of.items():
        missing = [y for y in expected if y not in labels]
        if not missing:
            continue
        what = f"{_name(missing[0], names)} has no {key} images" + (
            f" ({len(missing)} classes lack {key} images)" if len(missing) > 1 else "")
        if key == "val":  # val only selects models: loud, not fatal
            print(f"WARNING: split {source}: {what}; model selection on val ignores them")
            continue
        raise ValueError(f"Split {source}: {what}. Every class needs train and test images, or the base/new classes "
                         "and the test set silently change; add images for it or remove the class from every list "
                         "(and renumber the labels)")
    seen: Dict[str, str] = {}
    for key, items in present.items():
        for item in items:
            other = seen.setdefault(item.impath, key)
            if other != key:
                raise ValueError(f"Split {source}: image {item.impath} is in both the {other} and the {key} list; "
                                 "an image must be in exactly one list (remove it from one)")
