"""Open-set evaluation of any trainer: its own inference on known-class test images against unknown-class ones.

The trainer's classifier knows only the known classes. Unknown images come from the dataset reader when it is an
open-set benchmark (``dataset.open_set_unknown``: CIFAR10, CIFAR+10/+50, TinyImageNet), else, on a CoOp dataset
trained on its base classes, from the same dataset's new classes (known = base, unknown = new). Every score and
metric comes from the same logits (``dasslite.osr_metrics``); the macro-F1 threshold is chosen on the
validation images of both sides when there are some.

``OSR.ENABLED True`` makes ``train.py`` call :func:`run_open_set` after a successful test: it writes
``osr_scores.npz`` (per-image scores, for plots) and then ``osr_results.json`` beside ``results.json``, both
atomically and only once everything is computed, so a failed run never replaces earlier results.
"""
from __future__ import annotations

import io
import os.path as osp
from contextlib import nullcontext
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from yacs.config import CfgNode as CN

from dasslite.data.data_manager import build_data_loader
from dasslite.data.transforms import build_transform
from dasslite.prompting.config import register_config
from dasslite.utils.io import write_bytes_atomic, write_json_atomic

from dasslite.osr_metrics import BALANCE_MODES, OSR_RESULTS_FILE, OSR_SCORES_FILE, SCORES, evaluate_open_set


@register_config
def add_osr_config(cfg) -> None:
    """``cfg.OSR``: open-set evaluation after the test (off by default)."""
    cfg.OSR = CN()
    cfg.OSR.ENABLED = False
    cfg.OSR.SPLIT = 0  # open-set benchmarks: which of the five known/unknown class splits (0-4)
    cfg.OSR.BALANCE = "none"  # none | with_replacement (Vaze et al.) | dedup (the FSMoE release)
    cfg.OSR.MCM_TEMPERATURE = 1.0  # MCM: softmax of cosine / T
    cfg.OSR.ENERGY_TEMPERATURE = 1.0  # energy: T * logsumexp(logits / T)


class OpenSetSetupError(ValueError):
    """The run cannot be evaluated open-set as configured (the message names the key and the fix)."""


def unknown_data(trainer) -> Tuple[list, Optional[list], List[str]]:
    """``(test, val or None, class names)`` of the unknown classes for this run's dataset."""
    cfg = trainer.cfg
    provided = getattr(trainer.dm.dataset, "open_set_unknown", None)
    if provided is not None:
        return provided["test"], provided.get("val"), list(provided["classnames"])
    if cfg.DATASET.SUBSAMPLE_CLASSES != "base":
        raise OpenSetSetupError(
            f"OSR.ENABLED on {cfg.DATASET.NAME} needs DATASET.SUBSAMPLE_CLASSES base (known = the base classes, "
            f"unknown = the new ones), got {cfg.DATASET.SUBSAMPLE_CLASSES!r}; or use an open-set benchmark reader "
            f"(CIFAR10OSR, CIFARPlus10OSR, CIFARPlus50OSR, TinyImageNetOSR)")
    from dasslite.compat import build_dataset  # the active engine's reader registry

    new_cfg = cfg.clone()
    new_cfg.defrost()
    new_cfg.DATASET.SUBSAMPLE_CLASSES = "new"
    new_cfg.freeze()
    new = build_dataset(new_cfg)
    return new.test, new.val, list(new.classnames)


@torch.no_grad()
def collect_logits(trainer, data_source: list) -> Tuple[np.ndarray, np.ndarray]:
    """``(logits [N, C], labels [N])`` of the trainer's own inference over ``data_source`` (test transform)."""
    cfg = trainer.cfg
    tfm = getattr(trainer.dm, "tfm_test", None) or build_transform(cfg, is_train=False)
    loader = build_data_loader(cfg, cfg.DATALOADER.TEST.SAMPLER, data_source, cfg.DATALOADER.TEST.BATCH_SIZE,
                               tfm=tfm, is_train=False)
    logits, labels = [], []
    for batch in loader:
        image, label = trainer.parse_batch_test(batch)
        logits.append(trainer.model_inference(image).float().cpu())
        labels.append(label.cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def logit_scale_of(model) -> float:
    """CLIP's ``exp(logit_scale)``: MCM needs the cosines, logits / scale."""
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise OpenSetSetupError(f"{type(model).__name__} has no logit_scale; open-set scores need the CLIP logit "
                                f"scale (MCM is a softmax over cosines = logits / scale)")
    return float(scale.exp().item()) if torch.is_tensor(scale) else float(np.exp(scale))


def open_set_record(trainer, seed: int) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Evaluate ``trainer`` open-set: ``(the osr part of the record, per-image arrays)``."""
    cfg = trainer.cfg
    if cfg.OSR.BALANCE not in BALANCE_MODES:
        raise OpenSetSetupError(f'OSR.BALANCE "{cfg.OSR.BALANCE}" is not one of {", ".join(BALANCE_MODES)}')
    unknown_test, unknown_val, unknown_names = unknown_data(trainer)
    if not unknown_test:
        raise OpenSetSetupError(f"{cfg.DATASET.NAME} has no unknown-class test images")
    known_val = trainer.dm.dataset.val
    trainer.set_model_mode("eval")
    cache = getattr(trainer, "eval_cache", None)
    with cache() if cache is not None else nullcontext():
        known_logits, known_labels = collect_logits(trainer, trainer.dm.dataset.test)
        unknown_logits, _ = collect_logits(trainer, unknown_test)
        val = {}
        if known_val and unknown_val:
            val_known_logits, val_known_labels = collect_logits(trainer, known_val)
            val = dict(val_known_logits=val_known_logits, val_known_labels=val_known_labels,
                       val_unknown_logits=collect_logits(trainer, unknown_val)[0])
    result = evaluate_open_set(known_logits, known_labels, unknown_logits, logit_scale_of(trainer.model),
                               balance=cfg.OSR.BALANCE, seed=seed, scores=SCORES,
                               mcm_temperature=cfg.OSR.MCM_TEMPERATURE, energy_temperature=cfg.OSR.ENERGY_TEMPERATURE,
                               **val)
    per_image = result.pop("per_image")
    result.update(osr_split=int(cfg.OSR.SPLIT), known_classes=list(trainer.dm.dataset.classnames),
                  unknown_classes=unknown_names, scores_file=OSR_SCORES_FILE,
                  num_val_known=len(known_val or []), num_val_unknown=len(unknown_val or []))
    return result, per_image


def format_open_set(result: dict) -> str:
    """The ``=> open-set result`` block of the log: one line per score."""
    lines = [f"=> open-set result ({result['num_known']:,} known / {result['num_unknown']:,} unknown test images, "
             f"{result['num_classes']} known classes, balance {result['balance']})"]
    for name, m in result["metrics"].items():
        f1 = "-" if m["macro_f1"] is None else f"{m['macro_f1']:.1f}%"
        lines.append(f"* {name}: acc {m['acc']:.1f}% auroc {m['auroc']:.1f}% fpr95 {m['fpr95']:.1f}% "
                     f"oscr {m['oscr']:.1f}% open_auc {m['open_auc']:.1f}% macro_f1 {f1} "
                     f"(oracle {m['macro_f1_oracle']:.1f}%)")
    return "\n".join(lines)


def run_open_set(trainer, record: dict) -> str:
    """Evaluate open-set and write ``osr_scores.npz`` then ``osr_results.json`` (``record`` + ``osr``) atomically."""
    result, per_image = open_set_record(trainer, seed=int(record.get("seed", 0)))
    print(format_open_set(result))
    buffer = io.BytesIO()
    np.savez(buffer, **per_image)
    out_dir = trainer.cfg.OUTPUT_DIR
    write_bytes_atomic(osp.join(out_dir, OSR_SCORES_FILE), buffer.getvalue())
    payload = dict(record, complete=True, osr_split=result["osr_split"], balance=result["balance"], osr=result)
    return write_json_atomic(osp.join(out_dir, OSR_RESULTS_FILE), payload)
