from .lr_scheduler import ConstantWarmupScheduler, LinearWarmupScheduler, build_lr_scheduler
from .optimizer import build_optimizer

__all__ = ["build_optimizer", "build_lr_scheduler", "ConstantWarmupScheduler", "LinearWarmupScheduler"]
