"""Refuse runs whose results.json would look finished but is not (train.py calls these before and after building).

An untrained prompt evaluated as if trained, a "training" of zero epochs, or "0 shots" that silently means every
image each produce a complete, plausible record. Each is an error that names the key or flag and the fix.
"""
from __future__ import annotations

__all__ = ["RunRequestError", "check_run_request", "check_eval_request"]


class RunRequestError(ValueError):
    """A train.py invocation whose outcome would be mislabelled."""


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def check_run_request(args, cfg) -> None:
    """Before anything is built: epochs to train and shots asked for must mean what the record will say."""
    trains = not args.eval_only and not args.no_train
    if trains and cfg.OPTIM.MAX_EPOCH < 1:
        raise RunRequestError(f"OPTIM.MAX_EPOCH is {cfg.OPTIM.MAX_EPOCH}: a run must train at least 1 epoch, or its "
                              "results.json would record an untrained prompt as trained. Set OPTIM.MAX_EPOCH >= 1 "
                              "(or pass --eval-only --model-dir DIR to evaluate a trained model)")
    for key in ("DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TEST.BATCH_SIZE"):
        value = _get(cfg, key)
        if value is not None and value < 1:
            raise RunRequestError(f"{key} is {value}: a batch holds at least 1 image; set {key} >= 1")
    if trains and cfg.OPTIM.LR <= 0:
        raise RunRequestError(f"OPTIM.LR is {cfg.OPTIM.LR}: the learning rate must be positive (the recipes use "
                              "0.002 to 0.032); set OPTIM.LR > 0")
    if cfg.DATASET.NUM_SHOTS == 0:
        raise RunRequestError("DATASET.NUM_SHOTS is 0, which the lineage reads as 'all training images' while the "
                              "record would say 0 shots. Ask for at least 1 shot per class, or -1 for all images")
    if args.model_dir and not args.eval_only:
        print(f"WARNING: --model-dir {args.model_dir} is only read with --eval-only; this run trains from scratch")


def check_eval_request(args, trainer) -> None:
    """After the trainer is built: --eval-only of a trainer with learnable state needs the model to load."""
    if args.eval_only and not args.model_dir and trainer.get_model_names():
        names = ", ".join(trainer.get_model_names())
        if getattr(args, "untrained", False):
            print(f"WARNING: --untrained: evaluating the untrained (initial) {names} of {trainer.cfg.TRAINER.NAME} "
                  "on purpose; results.json records untrained: true")
            return
        raise RunRequestError(f"--eval-only without --model-dir would evaluate the untrained {names} of "
                              f"{trainer.cfg.TRAINER.NAME} and record it as a result. Pass --model-dir <the training "
                              "run's output folder> (zero-shot trainers such as ZeroshotCLIP need none), or "
                              "--untrained to evaluate the initial prompt on purpose")
