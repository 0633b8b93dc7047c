"""Virtual classes for text supervision: in base-to-new training the text losses of LASP (and MoCoOp) use every
class name of the dataset, base and new, while images (cross-entropy) only come from the base classes.

Order: the dataset's full label order. ``subsample_classes`` takes base = the first ceil(n/2) labels and new = the
rest, both relabelled in order, so the list is the base classes (in base-label order) followed by the new classes,
and base label y is row y of the list. (The authors' code built this list from a Python set, in an arbitrary
per-process order; label-aligned order is what a label-indexed use such as MoCoOp's gating target needs.)
This is LASP-V's protocol: the new class *names* (never their images) are seen during training.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple


def dataset_classnames(cfg) -> List[str]:
    """Every class name of ``cfg``'s dataset in label order (the reader rebuilt with SUBSAMPLE_CLASSES "all";
    the few-shot split is read from the cache the base run wrote)."""
    from dasslite.compat import build_dataset

    full = cfg.clone()
    full.defrost()
    full.DATASET.SUBSAMPLE_CLASSES = "all"
    full.VERBOSE = False
    return list(build_dataset(full).classnames)


def text_supervision_classes(cfg, classnames: Sequence[str], virtual: bool,
                             all_classnames: Optional[Sequence[str]] = None) -> Tuple[List[str], Optional[List[int]]]:
    """The class list text losses use, and where the current (image) classes sit in it (None: the same list).

    With ``virtual`` and ``DATASET.SUBSAMPLE_CLASSES == "base"`` the list is every class of the dataset (base first,
    then new) and the index is ``0..C_base-1``; otherwise it is ``classnames`` itself. ``all_classnames`` skips the
    dataset rebuild (tests, or a caller that already has them).
    """
    classnames = list(classnames)
    if not virtual or getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all") != "base":
        return classnames, None
    names = list(all_classnames) if all_classnames is not None else dataset_classnames(cfg)
    if names[:len(classnames)] != classnames:
        raise RuntimeError(f"the base classes {classnames[:3]}... are not the first {len(classnames)} of the "
                           f"dataset's classes {names[:3]}...; cannot align virtual classes with base labels")
    if len(set(names)) != len(names):
        raise RuntimeError("the dataset has duplicate class names; virtual classes need unique names")
    return names, list(range(len(classnames)))
