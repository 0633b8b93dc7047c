"""Checkpoint save/resume/load with Dassl's layout, usable on top of either engine.

Real Dassl's versions fail on current torch (``weights_only`` unpickling of scheduler objects) and crash when
``val_result`` is None; this mixin is put first in the MRO of our trainers so they work under both engines.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional

from dasslite.utils.checkpoint import (CheckpointReadError, latest_checkpoint_name, load_checkpoint,
                                       resume_from_checkpoint, save_checkpoint)

from .resume import (ConfigChangedError, capture_rng, config_changes, flatten_cfg, load_resume_state, restore_rng,
                     save_resume_state)


class CheckpointingMixin:
    """Needs ``get_model_names()`` and the ``_models/_optims/_scheds`` dicts of a Dassl TrainerBase."""

    # checkpoints ----------------------------------------------------------------------------------------
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "") -> None:
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    # exact resume (see dasslite.engine.resume) -------------------------------------------------------------
    def after_epoch(self) -> None:
        """Under real Dassl (this mixin first in the MRO): its after_epoch, then the resume state."""
        super().after_epoch()
        self.save_resume_state()

    def save_resume_state(self) -> None:
        """Write ``<output>/resume_state.pth`` after an epoch: learnable state, optimizers, schedulers, RNGs, config."""
        names = self.get_model_names()
        if not names:
            return
        scaler = getattr(self, "scaler", None)
        best = getattr(self, "best_result", None)
        save_resume_state(self.output_dir, {
            "epoch": self.epoch + 1,
            "models": {n: {"state_dict": self._models[n].state_dict(),
                           "optimizer": self._optims[n].state_dict() if self._optims[n] is not None else None,
                           "scheduler": self._scheds[n].state_dict() if self._scheds[n] is not None else None}
                       for n in names},
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best_result": float(best) if best is not None else None,
            "rng": capture_rng(),
            "config": flatten_cfg(self.cfg),
        })

    def _resume_exactly(self, directory: str) -> Optional[int]:
        state, path = load_resume_state(directory)
        if state is None:
            return None
        changed = config_changes(state["config"], flatten_cfg(self.cfg))
        if changed:
            detail = "; ".join(f"{k}: {old} in the run folder, {new} now" for k, (old, new) in changed.items())
            raise ConfigChangedError(f"Cannot resume the run in {directory}: its config differs from this run's "
                                     f"({detail}). Rerun with the same config and opts, or use a new --output-dir")
        names = self.get_model_names()
        missing = [n for n in names if n not in state["models"]]
        if missing:
            raise ConfigChangedError(f"Resume state {path} has no {missing} (it was written by another trainer); "
                                     "use a new --output-dir")
        for name in names:
            saved = state["models"][name]
            self._models[name].load_state_dict(saved["state_dict"])
            if self._optims[name] is not None and saved["optimizer"] is not None:
                self._optims[name].load_state_dict(saved["optimizer"])
            if self._scheds[name] is not None and saved["scheduler"] is not None:
                self._scheds[name].load_state_dict(saved["scheduler"])
        scaler = getattr(self, "scaler", None)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if state.get("best_result") is not None:
            self.best_result = state["best_result"]
        restore_rng(state["rng"])
        print(f"Found checkpoint at {directory} (will resume training)")
        print(f"Resuming exactly from {path} (after epoch {state['epoch']}: weights, optimizer, scheduler, RNG states)")
        self.resumed_from = {"epoch": int(state["epoch"]), "path": path}
        return int(state["epoch"])

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume exactly from the resume state if there is one, else every registered model from
        ``directory/<name>/`` if all of them have checkpoints (Dassl's way: no RNG states)."""
        self.resumed_from = None
        names = self.get_model_names()
        if names:
            epoch = self._resume_exactly(directory)
            if epoch is not None:
                return epoch
        if not names or any(latest_checkpoint_name(osp.join(directory, n)) is None for n in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f'Found checkpoint at {directory} (will resume training; no resume state, so the RNG is not restored)')
        start_epoch = 0
        for name in names:
            start_epoch = self._resume_with_fallback(osp.join(directory, name), name)
        self.resumed_from = {"epoch": start_epoch, "path": osp.join(directory, names[0])}
        return start_epoch

    def _resume_with_fallback(self, folder: str, name: str) -> int:
        """Dassl's resume from ``folder``'s latest checkpoint; an unreadable one falls back to the epoch before."""
        try:
            return resume_from_checkpoint(folder, self._models[name], self._optims[name], self._scheds[name])
        except CheckpointReadError as exc:
            print(f"WARNING: {exc}")
        latest = latest_checkpoint_name(folder)
        older = sorted((int(f.rsplit("-", 1)[1]), f) for f in os.listdir(folder)
                       if f.startswith("model.pth.tar-") and f.rsplit("-", 1)[1].isdigit() and f != latest)
        for _, fname in reversed(older):
            try:
                checkpoint = load_checkpoint(osp.join(folder, fname))
            except CheckpointReadError as exc:
                print(f"WARNING: {exc}")
                continue
            print(f"Resuming {name} from the previous checkpoint {osp.join(folder, fname)} instead")
            self._models[name].load_state_dict(checkpoint["state_dict"])
            if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
                self._optims[name].load_state_dict(checkpoint["optimizer"])
            if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
            return int(checkpoint["epoch"])
        print(f"WARNING: no readable checkpoint of {name} in {folder}; training it from scratch")
        return 0

    def resolve_checkpoint_path(self, directory: str, name: str, epoch: Optional[int]) -> str:
        """``model.pth.tar-<epoch>``; without an epoch ``model-best.pth.tar``, else the latest saved one."""
        folder = osp.join(directory, name)
        if epoch is not None:
            path = osp.join(folder, f"model.pth.tar-{epoch}")
        else:
            path = osp.join(folder, "model-best.pth.tar")
            if not osp.exists(path) and latest_checkpoint_name(folder):
                path = osp.join(folder, latest_checkpoint_name(folder))
        if not osp.exists(path):
            raise FileNotFoundError(f'No model at "{path}"')
        return path

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load every registered model from ``directory/<name>/`` (see ``resolve_checkpoint_path``)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = self.resolve_checkpoint_path(directory, name, epoch)
            self.load_model_state(name, self._models[name], load_checkpoint(path), path)

    def load_model_state(self, name: str, module, checkpoint: dict, path: str) -> None:
        """Put one checkpoint into one registered module (strict; trainers override to rebuild class buffers)."""
        val = checkpoint.get("val_result")
        val_str = "None" if val is None else f"{val:.1f}"
        print(f'Load {path} to {name} (epoch={checkpoint["epoch"]}, val_result={val_str})')
        module.load_state_dict(checkpoint["state_dict"])
