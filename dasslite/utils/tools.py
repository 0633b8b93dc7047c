"""Small helpers with Dassl's names: seeding, paths, environment info."""
from __future__ import annotations

import os
import os.path as osp
import random
import sys

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and all GPUs), as Dassl does before building a trainer."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def mkdir_if_missing(dirname: str) -> None:
    os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: str) -> bool:
    return osp.isfile(fpath)


def listdir_nohidden(path: str, sort: bool = False) -> list:
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    return sorted(items) if sort else items


def collect_env_info() -> str:
    """One block of versions for the log: python, torch, torchvision, CUDA, GPUs."""
    import platform

    import torchvision

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}",
        f"torchvision: {torchvision.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.version.cuda}")
        lines += [f"GPU {i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return "\n".join(lines)
