"""The dataset registry and ``build_dataset(cfg)``: readers register by class name, configs pick one by name."""
from __future__ import annotations

from dasslite.utils.registry import Registry

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Construct the reader named by ``cfg.DATASET.NAME`` with ``cfg`` (the registry suggests close names)."""
    name = cfg.DATASET.NAME
    if not name:
        raise ValueError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<dataset>.yaml "
                         "(or set DATASET.NAME to a registered reader class name)")
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return DATASET_REGISTRY.get(name)(cfg)
