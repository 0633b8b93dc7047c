"""Config nodes declared next to the code that reads them (``add_<method>_config``), collected in one list."""
from __future__ import annotations

from typing import Callable, List

from yacs.config import CfgNode as CN

_EXTENSIONS: List[Callable] = []

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def register_config(fn: Callable) -> Callable:
    """Decorator for ``add_<method>_config(cfg)`` functions; ``extend_cfg`` applies them all."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def add_prompt_common(node: CN, prec: str = "fp16") -> CN:
    """Keys every CLIP-prompt method node has: precision and gradient clipping (0 = off)."""
    node.PREC = prec
    node.GRAD_CLIP_NORM = 0.0
    return node


def extend_cfg(cfg: CN) -> CN:
    """CoOp's ``extend_cfg``: add the dataset keys and every registered method node (yacs rejects unknown keys)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new
    for fn in _EXTENSIONS:
        fn(cfg)
    return cfg
