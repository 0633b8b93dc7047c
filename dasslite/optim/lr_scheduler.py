"""LR schedulers stepped once per epoch, as Dassl steps them (the trainer calls ``update_lr`` at the last batch).

The warm-up wrappers reproduce Dassl's sequence exactly: with ``WARMUP_EPOCH 1`` and ``constant`` warm-up, epoch 1
runs at ``WARMUP_CONS_LR`` and epoch k >= 2 at ``0.5 * LR * (1 + cos(pi * (k - 2) / MAX_EPOCH))``. Unlike Dassl's,
they work on torch >= 2.7 (no ``verbose``) and their ``state_dict`` holds only plain data (the successor's state
is nested as a dict), so checkpoints load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

AVAILABLE_SCHEDULERS = ("single_step", "multi_step", "cosine")


class _BaseWarmupScheduler(LRScheduler):
    def __init__(self, optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def step(self, epoch=None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
            return
        super().step(epoch)

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        successor = state_dict.pop("successor")
        if isinstance(successor, LRScheduler):  # a checkpoint written by real Dassl pickles the object
            successor = successor.state_dict()
        self.__dict__.update(state_dict)
        self.successor.load_state_dict(successor)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """Hold ``cons_lr`` for ``warmup_epoch`` epochs, then hand over to ``successor``."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float, last_epoch: int = -1) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """Ramp linearly from ``min_lr`` to the base LR over ``warmup_epoch`` epochs, then hand over."""

    def __init__(self, optimizer, successor, warmup_epoch: int, min_lr: float, last_epoch: int = -1) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    """Build ``optim_cfg.LR_SCHEDULER`` (+ warm-up when ``WARMUP_EPOCH > 0``) with Dassl's arguments."""
    name = optim_cfg.LR_SCHEDULER
    stepsize, gamma, max_epoch = optim_cfg.STEPSIZE, optim_cfg.GAMMA, optim_cfg.MAX_EPOCH
    if name not in AVAILABLE_SCHEDULERS:
        raise ValueError(f'OPTIM.LR_SCHEDULER "{name}" is not supported; valid: {", ".join(AVAILABLE_SCHEDULERS)}')
    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = StepLR(optimizer, step_size=stepsize, gamma=gamma)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"OPTIM.STEPSIZE must be a list for multi_step, got {stepsize!r}")
        scheduler = MultiStepLR(optimizer, milestones=list(stepsize), gamma=gamma)
    else:
        scheduler = CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
        else:
            raise ValueError(f'OPTIM.WARMUP_TYPE "{optim_cfg.WARMUP_TYPE}" is not one of constant, linear')
    return scheduler
