"""Run train.py in-process exactly as the command line would (same parser, same config merge)."""
from __future__ import annotations

import json
import os
from typing import List, Optional

import train
from dasslite.compat import build_trainer, set_random_seed
from dasslite.utils import close_logger

TINY_INPUT = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "50",
              "TRAIN.PRINT_FREQ", "1"]


def run_train(root: str, clip_path: str, output_dir: str, trainer: str = "CoOp", config: str = "vit_b16_ep50",
              dataset_config: str = "configs/datasets/eurosat.yaml", seed: int = 1, extra: Optional[List[str]] = None,
              flags: Optional[List[str]] = None, config_dir: Optional[str] = None) -> dict:
    """Run one train.py job; returns the parsed results.json (or {} when none was written)."""
    argv = ["--root", root, "--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", dataset_config,
            "--config-file", f"configs/trainers/{config_dir or trainer}/{config}.yaml",
            "--output-dir", output_dir] + list(flags or [])
    opts = ["MODEL.BACKBONE.NAME", clip_path] + TINY_INPUT + list(extra or [])
    args = train.build_parser().parse_args(argv + opts)
    try:
        train.main(args)
    finally:
        close_logger()
    path = os.path.join(output_dir, "results.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def make_trainer(root: str, clip_path: str, out, trainer: str = "CoOp", config: str = "vit_b16_ep50", extra=()):
    """Build a trainer through train.py's config path (no training, no log file)."""
    argv = ["--root", root, "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/eurosat.yaml",
            "--config-file", f"configs/trainers/{trainer}/{config}.yaml", "--output-dir", str(out),
            "MODEL.BACKBONE.NAME", clip_path, *TINY_INPUT, *extra]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    set_random_seed(cfg.SEED)
    trainer_obj = build_trainer(cfg)
    close_logger()
    return trainer_obj


def one_step_checking_updates(tr, batch=None):
    """``one_step``, then check that every learnable parameter got a non-zero gradient and changed, and that every
    frozen one got no gradient and kept its value; returns ``(summary, batch)``."""
    import torch

    frozen = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    learnable = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    summary, batch = one_step(tr, batch)
    for n, p in tr.model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
            assert not torch.equal(p.detach(), learnable[n]), n
        else:
            assert p.grad is None and torch.equal(p.detach(), frozen[n]), n
    return summary, batch


def one_step(tr, batch=None):
    """One training step on ``batch`` (default: the first train batch) in the middle of an epoch."""
    batch = batch or next(iter(tr.train_loader_x))
    tr.set_model_mode("train")
    tr.batch_idx, tr.num_batches = 0, 5
    return tr.forward_backward(batch), batch
