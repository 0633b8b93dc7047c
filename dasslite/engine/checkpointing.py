"""Checkpoint save/resume/load with Dassl's layout, usable on top of either engine.

Real Dassl's versions fail on current torch (``weights_only`` unpickling of scheduler objects) and crash when
``val_result`` is None; this mixin is put first in the MRO of our trainers so they work under both engines.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

from dasslite.utils.checkpoint import latest_checkpoint_name, load_checkpoint, resume_from_checkpoint, save_checkpoint


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

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory/<name>/`` if all of them have checkpoints."""
        names = self.get_model_names()
        if not names or any(latest_checkpoint_name(osp.join(directory, n)) is None for n in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f'Found checkpoint at {directory} (will resume training)')
        start_epoch = 0
        for name in names:
            start_epoch = resume_from_checkpoint(osp.join(directory, name), self._models[name],
                                                 self._optims[name], self._scheds[name])
        return start_epoch

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
