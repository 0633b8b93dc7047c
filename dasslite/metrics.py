"""Metrics shared by trainers and evaluators."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def compute_accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list:
    """Top-k accuracies in percent, as a list of 1-element tensors (Dassl's return type)."""
    maxk = max(topk)
    batch_size = target.size(0)
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Macro-averaged F1 (0..1) over the labels present in ``y_true`` (sklearn's ``labels=np.unique(y_true)``)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for label in np.unique(y_true):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, normalize: bool = True) -> np.ndarray:
    """Rows = true class, columns = predicted; rows normalised to sum 1 when ``normalize``."""
    cmat = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(cmat, (np.asarray(y_true), np.asarray(y_pred)), 1)
    if normalize:
        sums = cmat.sum(1, keepdims=True)
        cmat = np.divide(cmat, sums, out=np.zeros_like(cmat), where=sums > 0)
    return cmat
