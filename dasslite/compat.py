"""The one import point that decides which engine our trainers and datasets plug into.

Real Dassl (``dassl``) when it is importable, our built-in engine otherwise. ``DASSLITE_BACKEND``
forces either: ``dassl`` (error if it is missing), ``builtin``, or ``auto`` (default).
Trainers and dataset readers import registries and base classes from here, never from either
engine directly, so the same class registers into whichever engine runs.
"""
from __future__ import annotations

import importlib.util
import os

_VALID = ("auto", "dassl", "builtin")


def _resolve_backend() -> str:
    wanted = os.environ.get("DASSLITE_BACKEND", "auto").strip().lower() or "auto"
    if wanted not in _VALID:
        raise ValueError(f"DASSLITE_BACKEND={wanted!r} is not one of {', '.join(_VALID)}")
    has_dassl = importlib.util.find_spec("dassl") is not None
    if wanted == "dassl" and not has_dassl:
        raise ImportError("DASSLITE_BACKEND=dassl but the 'dassl' package is not importable "
                          "(install Dassl.pytorch, or unset DASSLITE_BACKEND to use the built-in engine)")
    if wanted == "builtin" or not has_dassl:
        return "builtin"
    return "dassl"


BACKEND = _resolve_backend()

if BACKEND == "dassl":  # pragma: no cover - exercised only where Dassl is installed
    from dassl.config import get_cfg_default
    from dassl.data import DataManager
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dassl.evaluation import EVALUATOR_REGISTRY, build_evaluator
    from dassl.metrics import compute_accuracy
    from dassl.utils import setup_logger, set_random_seed, collect_env_info
else:
    from dasslite.config import get_cfg_default
    from dasslite.data import DataManager
    from dasslite.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from dasslite.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dasslite.evaluation import EVALUATOR_REGISTRY, build_evaluator
    from dasslite.metrics import compute_accuracy
    from dasslite.utils import setup_logger, set_random_seed, collect_env_info

__all__ = [
    "BACKEND", "get_cfg_default", "DataManager", "DATASET_REGISTRY", "DatasetBase", "Datum",
    "build_dataset", "TRAINER_REGISTRY", "TrainerX", "build_trainer", "EVALUATOR_REGISTRY",
    "build_evaluator", "compute_accuracy", "setup_logger", "set_random_seed", "collect_env_info",
]
