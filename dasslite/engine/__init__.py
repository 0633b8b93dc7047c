from dasslite.utils.registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")

from .checkpointing import CheckpointingMixin  # noqa: E402
from .trainer import SimpleTrainer, TrainerBase, TrainerX, evaluate_split  # noqa: E402


def build_trainer(cfg):
    """Instantiate ``cfg.TRAINER.NAME`` from the registry (error lists the registered trainers)."""
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


__all__ = ["TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX", "CheckpointingMixin",
           "evaluate_split"]
