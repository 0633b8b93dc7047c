"""Exact resume: a per-epoch resume state that makes a killed and rerun run end bit-identical to an uninterrupted one.

Dassl's checkpoints (``<name>/model.pth.tar-N``) hold weights, optimizer and scheduler, but not the random number
generators, and with ``CHECKPOINT_FREQ 0`` exist only after the last epoch. After every epoch the trainer therefore
also writes ``<output>/resume_state.pth``: the learnable state of every registered model (cheap: frozen CLIP is not
in it), optimizers, schedulers, the AMP scaler, the python / numpy / torch RNG states (which also decide the next
epoch's data order) and the run's config. The previous one is kept as ``resume_state.pth.prev``, so an unreadable
latest state (a disk-full or truncated write) falls back to the one before. A rerun whose config differs from the
run folder's is refused, naming the differing keys: resuming would mix two schedules under the new values.
"""
from __future__ import annotations

import os
import os.path as osp
import random
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from dasslite.utils.checkpoint import torch_save_atomic

__all__ = ["RESUME_FILE", "ConfigChangedError", "capture_rng", "restore_rng", "flatten_cfg", "config_changes",
           "save_resume_state", "load_resume_state", "IGNORED_CONFIG_KEYS"]

RESUME_FILE = "resume_state.pth"
PREVIOUS_SUFFIX = ".prev"
# Keys that may differ on a rerun without changing what is trained: where things are, how often it prints.
IGNORED_CONFIG_KEYS = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAIN.PRINT_FREQ", "VERBOSE")


class ConfigChangedError(ValueError):
    """A rerun into a run folder whose saved config differs from the current one."""


def capture_rng() -> Dict[str, object]:
    """python, numpy and torch (CPU, and CUDA when present) RNG states, in types ``torch.load(weights_only)`` reads."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, object] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Dict[str, object]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def flatten_cfg(cfg, prefix: str = "") -> Dict[str, str]:
    """``{"OPTIM.LR": "0.002", ...}`` for a yacs CfgNode (values as repr, so tuples and lists compare as written)."""
    out: Dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(flatten_cfg(value, name + "."))
        else:
            out[name] = repr(value)
    return out


def config_changes(saved: Dict[str, str], current: Dict[str, str]) -> Dict[str, Tuple[Optional[str], Optional[str]]]:
    """``{key: (saved, current)}`` for every key that differs, ignoring :data:`IGNORED_CONFIG_KEYS`."""
    keys = (set(saved) | set(current)) - set(IGNORED_CONFIG_KEYS)
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def save_resume_state(directory: str, state: dict) -> str:
    """Write ``state`` to ``directory/resume_state.pth`` atomically, keeping the previous file as ``.prev``."""
    path = osp.join(directory, RESUME_FILE)
    data_path = path + ".next"
    torch_save_atomic(state, data_path)
    if osp.exists(path):
        os.replace(path, path + PREVIOUS_SUFFIX)
    os.replace(data_path, path)
    return path


def load_resume_state(directory: str) -> Tuple[Optional[dict], Optional[str]]:
    """The newest readable resume state in ``directory`` and its path; an unreadable one is named and skipped."""
    path = osp.join(directory, RESUME_FILE)
    for candidate in (path, path + ".next", path + PREVIOUS_SUFFIX):
        if not osp.isfile(candidate):
            continue
        try:
            return torch.load(candidate, map_location="cpu", weights_only=True), candidate
        except Exception as exc:  # truncated / corrupt (disk full, killed copy): fall back to the previous one
            print(f"WARNING: resume state {candidate} cannot be read ({type(exc).__name__}: {exc}); "
                  "trying the previous one")
    return None, None
