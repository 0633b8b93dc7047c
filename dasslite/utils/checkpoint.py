"""Checkpoint files in Dassl's layout: ``<dir>/model.pth.tar-<epoch>``, ``model-best.pth.tar`` and a ``checkpoint``
text file naming the latest one (read by resume)."""
from __future__ import annotations

import os
import os.path as osp
import pickle
import shutil
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch

from .io import write_atomic


def _strip_module_prefix(state_dict: Dict[str, Any]) -> "OrderedDict[str, Any]":
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def save_checkpoint(state: Dict[str, Any], save_dir: str, is_best: bool = False,
                    remove_module_from_keys: bool = True, model_name: str = "") -> str:
    """Save ``state`` (needs ``state_dict`` and ``epoch``) atomically and update the ``checkpoint`` pointer file."""
    os.makedirs(save_dir, exist_ok=True)
    if remove_module_from_keys:
        state = dict(state, state_dict=_strip_module_prefix(state["state_dict"]))
    model_name = model_name or f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, model_name)
    torch_save_atomic(state, fpath)
    print(f"Checkpoint saved to {fpath}")
    with open(osp.join(save_dir, "checkpoint"), "w") as f:
        f.write(f"{osp.basename(fpath)}\n")
    if is_best:
        shutil.copy(fpath, osp.join(save_dir, "model-best.pth.tar"))
    return fpath


def load_checkpoint(fpath: str) -> Dict[str, Any]:
    """Load a checkpoint on CPU (or wherever it fits). Our checkpoints hold plain tensors/numbers only and load with
    ``weights_only=True``; checkpoints written by real Dassl pickle scheduler objects and need the fallback."""
    if not fpath or not osp.isfile(fpath):
        raise FileNotFoundError(f'Checkpoint not found: "{fpath}"')
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        try:
            return torch.load(fpath, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            # A Dassl-written file (pickled CosineAnnealingLR); the user's own checkpoint, so full unpickling is OK.
            return torch.load(fpath, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated (killed copy, full disk) or not a checkpoint: torch does not name the file
        raise CheckpointReadError(f'Checkpoint "{fpath}" cannot be read ({type(exc).__name__}: {exc}); it is '
                                  f"truncated or corrupt (size {osp.getsize(fpath)} bytes). Delete it (a resume "
                                  "then starts from the previous checkpoint) or restore it from a copy") from exc


class CheckpointReadError(RuntimeError):
    """A checkpoint file torch cannot load (the message names the file)."""


def torch_save_atomic(obj: Any, path: str) -> str:
    """``torch.save`` to ``path`` atomically; a failed write (e.g. a full disk) is an OSError naming the file."""
    try:
        return write_atomic(path, lambda tmp: torch.save(obj, tmp))
    except (RuntimeError, OSError) as exc:
        folder = osp.dirname(osp.abspath(path))
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free there"
        except OSError:
            free = "free space unknown"
        raise OSError(f'Cannot write "{path}" ({type(exc).__name__}: {exc}); {free}. Is the disk full or the '
                      "folder read-only? Free space and rerun: the run resumes from its last complete state") from exc


def latest_checkpoint_name(fdir: str) -> Optional[str]:
    """The file named by ``<fdir>/checkpoint`` (the last one saved), or None."""
    pointer = osp.join(fdir, "checkpoint")
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.readline().strip()
    return name or None


def resume_from_checkpoint(fdir: str, model, optimizer=None, scheduler=None) -> int:
    """Load model/optimizer/scheduler state from the latest checkpoint in ``fdir``; return its epoch."""
    name = latest_checkpoint_name(fdir)
    if name is None:
        raise FileNotFoundError(f'No "checkpoint" pointer file in "{fdir}" to resume from')
    fpath = osp.join(fdir, name)
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = int(checkpoint["epoch"])
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model: torch.nn.Module, weight_path: str) -> None:
    """Load the keys of ``weight_path`` whose name and shape match ``model``; report the discarded ones."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    state_dict = _strip_module_prefix(state_dict)
    own = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        if k in own and own[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    if not matched:
        raise ValueError(f'No layer of "{weight_path}" matches the model (names or shapes differ)')
    own.update(matched)
    model.load_state_dict(own)
    print(f'Loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(f"** The following layers are discarded due to unmatched keys or layer size: {discarded}")


def check_state_dict_compat(module: torch.nn.Module, state_dict: Dict[str, Any], source: str,
                            ignore: tuple = ()) -> None:
    """Refuse a partial or mis-shaped load: every key must exist on both sides with the same shape.

    ``ignore`` names keys the module rebuilds itself (e.g. class-name token buffers), which may be absent.
    """
    own = {k: v for k, v in module.state_dict().items() if k not in ignore}
    theirs = {k: v for k, v in state_dict.items() if k not in ignore}
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(theirs)) if tuple(theirs[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append("shape mismatch " + "; ".join(mismatched))
    if problems:
        if missing or unexpected:
            why = (" It holds other parameters than this trainer's: it was written by another trainer (or with other "
                   "trainer options); evaluate it with the --trainer and --config-file that trained it.")
        else:
            why = (" Same parameters, other shapes: other trainer options (N_CTX, ...) or a class-specific context "
                   "(CSC True) loaded for another number of classes; use the training run's config.")
        raise ValueError(f'Checkpoint "{source}" does not fit the model: ' + ", ".join(problems) + "." + why)
