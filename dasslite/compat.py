"""The one import point for the engine our trainers and datasets plug into (:mod:`dasslite.backend` decides which).

Real Dassl (``dassl``) when it is importable, our built-in engine otherwise; ``DASSLITE_BACKEND`` forces either.
Trainers and dataset readers import registries and base classes from here, never from either engine directly, so
the same class registers into whichever engine runs.
"""
from __future__ import annotations

from dasslite.backend import BACKEND

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
