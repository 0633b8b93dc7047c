"""The Classification evaluator: Dassl's accumulation, printout (the lines result parsers read) and return value."""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Dict, Optional

import numpy as np
import torch

from dasslite.metrics import confusion_matrix, macro_f1
from dasslite.utils.registry import Registry

EVALUATOR_REGISTRY = Registry("EVALUATOR")


class EvaluatorBase:
    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error, macro-F1, and optionally per-class accuracy and a confusion matrix."""

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname (class names by label)")
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list = []
        self._y_pred: list = []
        self._per_class_res = defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.cpu().tolist())
        self._y_pred.extend(pred.cpu().tolist())
        if self._per_class_res is not None:
            for label, match in zip(gt.cpu().tolist(), matches.cpu().tolist()):
                self._per_class_res[label].append(int(match))

    @property
    def counts(self) -> Dict[str, int]:
        return {"total": self._total, "correct": self._correct}

    def evaluate(self) -> "OrderedDict[str, float]":
        if self._total == 0:
            raise RuntimeError("The evaluator saw no samples: the evaluation split is empty")
        results: "OrderedDict[str, float]" = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        f1 = 100.0 * macro_f1(self._y_true, self._y_pred)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = f1
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {f1:.1f}%"
        )
        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                print(f"* class: {label} ({self._lab2cname[label]})\ttotal: {total:,}\tcorrect: {correct:,}\t"
                      f"acc: {class_acc:.1f}%")
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc
        if self.cfg.TEST.COMPUTE_CMAT:
            num_classes = max(max(self._y_true), max(self._y_pred)) + 1
            cmat = confusion_matrix(self._y_true, self._y_pred, num_classes, normalize=True)
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(torch.from_numpy(cmat), save_path)
            print(f"Confusion matrix is saved to {save_path}")
        return results


def build_evaluator(cfg, **kwargs) -> EvaluatorBase:
    """Instantiate ``cfg.TEST.EVALUATOR`` from the registry."""
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
