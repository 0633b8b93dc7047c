"""Open-set recognition from one set of logits: knownness scores, balanced evaluation and the OSR metrics.

Pure numpy / scipy / scikit-learn (no torch), so the sweeps and tables can import it cheaply.
Known test images are the positives; a score is larger for "known". Definitions follow the reference note
(§1.7, §2.3, §2.4). scikit-learn computes AUROC, the ROC curve (FPR@95TPR, detection accuracy), the two
precision-recall areas and F1; OSCR and OpenAUC are computed here.

OSCR (the area under CCR against FPR) and OpenAUC (P(S(k) > S(u) and k correctly classified)) are the same number
when ties count one half: every unknown adds 1/|U| to the FPR at its own score, where the CCR is the share of
correctly classified knowns scored above it (half of those scored equal, by the trapezoid). OSCR is computed from
its curve, OpenAUC as an AUC with misclassified knowns pushed below every unknown; the tests check both against a
brute-force double loop, and that they agree.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

SCORES = ("mls", "msp", "mcm", "energy", "entropy")
BALANCE_MODES = ("none", "with_replacement", "dedup")
# What an open-set evaluation writes beside results.json (dasslite.evaluation.open_set), read by the sweep and tables.
OSR_RESULTS_FILE = "osr_results.json"
OSR_SCORES_FILE = "osr_scores.npz"
# The metrics of one score, in table order; percentages except none.
METRICS = ("acc", "auroc", "fpr95", "oscr", "aupr_in", "aupr_out", "dtacc", "open_auc", "macro_f1", "macro_f1_oracle")
TPR_TARGET = 0.95
# The macro-F1 threshold is searched over every distinct score up to this many, else over this many quantiles.
MAX_THRESHOLDS = 2048


# ------------------------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------------------------
def _sklearn_metrics():
    """``sklearn.metrics``, imported on first use: the results and sweep tools read this module's names (scores,
    balance modes, file names) and should not pay scikit-learn's import (about 2 s; scipy's 0.3 s) for that."""
    from sklearn import metrics

    return metrics


def knownness_scores(logits: np.ndarray, logit_scale: float, names: Sequence[str] = SCORES,
                     mcm_temperature: float = 1.0, energy_temperature: float = 1.0) -> Dict[str, np.ndarray]:
    """``{score: [N]}`` from logits ``[N, C]`` = ``logit_scale`` x cosine (larger = more likely known).

    mls: max logit; msp: max softmax; mcm: max softmax of cosine / T (Ming et al.); energy: T·logsumexp(z / T)
    (the negative free energy); entropy: minus the entropy of the softmax.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"logits must be [N, C] with C >= 1, got shape {z.shape}")
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"unknown open-set score(s) {unknown}; choose from {', '.join(SCORES)}")
    if logit_scale <= 0 or mcm_temperature <= 0 or energy_temperature <= 0:
        raise ValueError(f"logit_scale ({logit_scale}), the MCM temperature ({mcm_temperature}) and the energy "
                         f"temperature ({energy_temperature}) must be > 0")
    from scipy.special import logsumexp, softmax  # on first use, like sklearn (see _sklearn_metrics)

    out: Dict[str, np.ndarray] = {}
    for name in names:
        if name == "mls":
            out[name] = z.max(1)
        elif name == "msp":
            out[name] = softmax(z, axis=1).max(1)
        elif name == "mcm":
            out[name] = softmax(z / (logit_scale * mcm_temperature), axis=1).max(1)
        elif name == "energy":
            out[name] = energy_temperature * logsumexp(z / energy_temperature, axis=1)
        else:
            p = softmax(z, axis=1)
            out[name] = np.sum(p * np.log(np.clip(p, 1e-300, None)), axis=1)
    return out


# ------------------------------------------------------------------------------------------------------------
# Balanced evaluation
# ------------------------------------------------------------------------------------------------------------
def balance_indices(num_known: int, num_unknown: int, mode: str = "none",
                    seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Indices into the known and the unknown test sets after balancing (ref. note §1.7).

    ``none``: everything. ``with_replacement`` (Vaze et al.): the larger side is drawn to the smaller side's size
    with replacement (``np.random.RandomState(seed).choice``), duplicates kept. ``dedup`` (the FSMoE release): the
    same draw, duplicates dropped, so the larger side ends up smaller than the smaller one.
    """
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; choose from {', '.join(BALANCE_MODES)}")
    known, unknown = np.arange(num_known), np.arange(num_unknown)
    if mode == "none" or num_known == num_unknown:
        return known, unknown
    draw = np.random.RandomState(seed).choice(max(num_known, num_unknown), size=min(num_known, num_unknown),
                                              replace=True)
    if mode == "dedup":
        draw = np.unique(draw)
    return (draw, unknown) if num_known > num_unknown else (known, draw)


# ------------------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------------------
def _binary(known: np.ndarray, unknown: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    if known.size == 0 or unknown.size == 0:
        raise ValueError(f"open-set metrics need known and unknown samples, got {known.size} known and "
                         f"{unknown.size} unknown")
    return np.r_[np.ones(known.size), np.zeros(unknown.size)], np.r_[known, unknown]


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(S(k) > S(u)), ties one half (sklearn)."""
    y, s = _binary(known, unknown)
    return float(_sklearn_metrics().roc_auc_score(y, s))


def roc(known: np.ndarray, unknown: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the exact step ROC (sklearn, every threshold kept), from (0, 0) to (1, 1)."""
    y, s = _binary(known, unknown)
    fpr, tpr, _ = _sklearn_metrics().roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr_target: float = TPR_TARGET) -> float:
    """The smallest FPR among thresholds that accept at least ``tpr_target`` of the knowns (S >= θ)."""
    fpr, tpr = roc(known, unknown)
    return float(fpr[np.searchsorted(tpr, tpr_target - 1e-12, side="left")])


def detection_accuracy(known: np.ndarray, unknown: np.ndarray) -> float:
    """max over thresholds of ½(TPR + TNR)."""
    fpr, tpr = roc(known, unknown)
    return float(np.max(0.5 * (tpr + 1.0 - fpr)))


def aupr(known: np.ndarray, unknown: np.ndarray) -> Tuple[float, float]:
    """``(AUPR-in, AUPR-out)``: sklearn's average precision, knowns positive, resp. unknowns positive (score −S)."""
    y, s = _binary(known, unknown)
    metrics = _sklearn_metrics()
    return float(metrics.average_precision_score(y, s)), float(metrics.average_precision_score(1 - y, -s))


def oscr_curve(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(fpr, ccr)`` at every distinct score θ, accepting S >= θ, from (0, 0) to (1, ACC)."""
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    _binary(known, unknown)
    if correct.shape != known.shape:
        raise ValueError(f"correct has shape {correct.shape}, the known scores {known.shape}")
    thresholds = np.unique(np.r_[known, unknown])[::-1]  # descending
    ok = np.sort(known[correct])
    unk = np.sort(unknown)
    ccr = (ok.size - np.searchsorted(ok, thresholds, side="left")) / known.size
    fpr = (unk.size - np.searchsorted(unk, thresholds, side="left")) / unknown.size
    return np.r_[0.0, fpr], np.r_[0.0, ccr]


def oscr(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
    """Open-Set Classification Rate (Dhamija et al. 2018): the trapezoid area under :func:`oscr_curve`."""
    fpr, ccr = oscr_curve(known, correct, unknown)
    return float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2.0))


def open_auc(known: np.ndarray, correct: np.ndarray, unknown: np.ndarray) -> float:
    """OpenAUC (Wang et al. 2022): an AUC with every misclassified known scored below every unknown (sklearn)."""
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    y, s = _binary(known, unknown)
    floor = min(known.min(), unknown.min()) - 1.0
    s[: known.size] = np.where(np.asarray(correct, dtype=bool), known, floor)
    return float(_sklearn_metrics().roc_auc_score(y, s))


def open_set_predictions(known_scores: np.ndarray, known_pred: np.ndarray, unknown_scores: np.ndarray,
                         unknown_pred: np.ndarray, threshold: float, unknown_label: int) -> np.ndarray:
    """Predicted labels of [known; unknown] images: ``unknown_label`` where the score is below the threshold."""
    scores = np.r_[known_scores, unknown_scores]
    pred = np.r_[known_pred, unknown_pred]
    return np.where(scores >= threshold, pred, unknown_label)


def open_set_macro_f1(known_labels: np.ndarray, known_scores: np.ndarray, known_pred: np.ndarray,
                      unknown_scores: np.ndarray, unknown_pred: np.ndarray, threshold: float,
                      num_classes: int) -> float:
    """Macro-F1 over the known classes present plus "unknown" (label ``num_classes``) at ``threshold`` (sklearn)."""
    y_true = np.r_[np.asarray(known_labels), np.full(len(unknown_scores), num_classes)]
    y_pred = open_set_predictions(known_scores, known_pred, unknown_scores, unknown_pred, threshold, num_classes)
    f1 = _sklearn_metrics().f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
    return float(f1)


def candidate_thresholds(scores: np.ndarray, limit: int = MAX_THRESHOLDS) -> np.ndarray:
    """Every distinct score (up to ``limit``), else ``limit`` quantiles; plus +inf (reject everything)."""
    values = np.unique(np.asarray(scores, dtype=np.float64))
    if values.size > limit:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, limit)))
    return np.r_[values, np.inf]


def macro_f1_sweep(known_labels, known_scores, known_pred, unknown_scores, unknown_pred,
                   thresholds: np.ndarray) -> np.ndarray:
    """:func:`open_set_macro_f1` at every threshold at once (counts by binary search instead of one pass each).

    Per class c present in the labels, F1_c = 2·TP_c / (predicted_c + true_c); the unknown class collects every
    image scored below the threshold, and an unknown image scored at or above it counts as its predicted class.
    """
    known_labels, known_pred, unknown_pred = np.asarray(known_labels), np.asarray(known_pred), np.asarray(unknown_pred)
    known_scores, unknown_scores = np.asarray(known_scores, np.float64), np.asarray(unknown_scores, np.float64)
    thresholds = np.asarray(thresholds, np.float64)

    def at_or_above(values: np.ndarray) -> np.ndarray:  # [M] counts of values >= each threshold
        values = np.sort(values)
        return values.size - np.searchsorted(values, thresholds, side="left")

    f1s = []
    for c in np.unique(known_labels):
        tp = at_or_above(known_scores[(known_labels == c) & (known_pred == c)])
        predicted = at_or_above(known_scores[known_pred == c]) + at_or_above(unknown_scores[unknown_pred == c])
        f1s.append(2.0 * tp / (predicted + np.sum(known_labels == c)))
    if len(unknown_scores):
        all_scores = np.r_[known_scores, unknown_scores]
        tp = unknown_scores.size - at_or_above(unknown_scores)
        predicted = all_scores.size - at_or_above(all_scores)
        f1s.append(2.0 * tp / (predicted + unknown_scores.size))
    return np.mean(f1s, axis=0)


def best_threshold(known_labels, known_scores, known_pred, unknown_scores, unknown_pred,
                   num_classes: int) -> Tuple[float, float]:
    """``(threshold, macro-F1)`` maximising the open-set macro-F1 on these images (the lowest such threshold)."""
    thresholds = candidate_thresholds(np.r_[known_scores, unknown_scores])
    f1 = macro_f1_sweep(known_labels, known_scores, known_pred, unknown_scores, unknown_pred, thresholds)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


# ------------------------------------------------------------------------------------------------------------
# Everything for one evaluation
# ------------------------------------------------------------------------------------------------------------
def score_metrics(known_labels: np.ndarray, known_pred: np.ndarray, known_scores: np.ndarray,
                  unknown_pred: np.ndarray, unknown_scores: np.ndarray, num_classes: int,
                  threshold: Optional[float] = None) -> Dict[str, Optional[float]]:
    """Every metric of one score (percentages). ``threshold`` (chosen on validation images) gives ``macro_f1``;
    ``macro_f1_oracle`` picks its threshold on these test images, as the FSMoE release does."""
    correct = np.asarray(known_pred) == np.asarray(known_labels)
    aupr_in, aupr_out = aupr(known_scores, unknown_scores)
    f1_args = (known_labels, known_scores, known_pred, unknown_scores, unknown_pred)
    oracle_threshold, oracle_f1 = best_threshold(*f1_args, num_classes)
    result = {
        "acc": 100.0 * float(correct.mean()),
        "auroc": 100.0 * auroc(known_scores, unknown_scores),
        "fpr95": 100.0 * fpr_at_tpr(known_scores, unknown_scores),
        "oscr": 100.0 * oscr(known_scores, correct, unknown_scores),
        "aupr_in": 100.0 * aupr_in,
        "aupr_out": 100.0 * aupr_out,
        "dtacc": 100.0 * detection_accuracy(known_scores, unknown_scores),
        "open_auc": 100.0 * open_auc(known_scores, correct, unknown_scores),
        "macro_f1": None if threshold is None else 100.0 * open_set_macro_f1(*f1_args, threshold, num_classes),
        "macro_f1_oracle": 100.0 * oracle_f1,
        "threshold": threshold,
        "threshold_oracle": oracle_threshold,
    }
    return result


def evaluate_open_set(known_logits: np.ndarray, known_labels: np.ndarray, unknown_logits: np.ndarray,
                      logit_scale: float, val_known_logits: Optional[np.ndarray] = None,
                      val_known_labels: Optional[np.ndarray] = None, val_unknown_logits: Optional[np.ndarray] = None,
                      balance: str = "none", seed: int = 0, scores: Sequence[str] = SCORES,
                      mcm_temperature: float = 1.0, energy_temperature: float = 1.0) -> dict:
    """All scores and metrics of one open-set evaluation, plus the per-image arrays the plots need.

    The closed-set classifier knows ``C`` classes (the logits' width); unknown images have no label. The macro-F1
    threshold of each score is the best one on the validation images when all three ``val_*`` are given, else
    ``macro_f1`` is None (the oracle variant is always reported). Balancing applies to the test images only.
    """
    known_logits, unknown_logits = np.asarray(known_logits, np.float64), np.asarray(unknown_logits, np.float64)
    known_labels = np.asarray(known_labels, dtype=np.int64)
    num_classes = known_logits.shape[1]
    if unknown_logits.ndim != 2 or unknown_logits.shape[1] != num_classes:
        raise ValueError(f"unknown logits have shape {unknown_logits.shape}; expected [N, {num_classes}] like the "
                         f"known logits")
    if known_labels.shape != (known_logits.shape[0],):
        raise ValueError(f"{known_labels.shape[0] if known_labels.ndim else 0} known labels for "
                         f"{known_logits.shape[0]} known logits")
    ki, ui = balance_indices(len(known_logits), len(unknown_logits), balance, seed)
    known_logits, known_labels, unknown_logits = known_logits[ki], known_labels[ki], unknown_logits[ui]
    kw = dict(names=scores, mcm_temperature=mcm_temperature, energy_temperature=energy_temperature)
    known_s = knownness_scores(known_logits, logit_scale, **kw)
    unknown_s = knownness_scores(unknown_logits, logit_scale, **kw)
    known_pred, unknown_pred = known_logits.argmax(1), unknown_logits.argmax(1)
    has_val = val_known_logits is not None and val_unknown_logits is not None and val_known_labels is not None
    if has_val:
        val_known_logits = np.asarray(val_known_logits, np.float64)
        val_unknown_logits = np.asarray(val_unknown_logits, np.float64)
        val_known_s = knownness_scores(val_known_logits, logit_scale, **kw)
        val_unknown_s = knownness_scores(val_unknown_logits, logit_scale, **kw)
    metrics = {}
    for name in scores:
        threshold = None
        if has_val:
            threshold, _ = best_threshold(np.asarray(val_known_labels), val_known_s[name],
                                          val_known_logits.argmax(1), val_unknown_s[name],
                                          val_unknown_logits.argmax(1), num_classes)
        metrics[name] = score_metrics(known_labels, known_pred, known_s[name], unknown_pred, unknown_s[name],
                                      num_classes, threshold)
    return {
        "metrics": metrics,
        "num_known": int(len(ki)), "num_unknown": int(len(ui)), "num_classes": int(num_classes),
        "balance": balance, "balance_seed": int(seed), "logit_scale": float(logit_scale),
        "mcm_temperature": float(mcm_temperature), "energy_temperature": float(energy_temperature),
        "threshold_source": "val" if has_val else None,
        "per_image": {"known_index": ki, "unknown_index": ui, "known_label": known_labels, "known_pred": known_pred,
                      "unknown_pred": unknown_pred,
                      **{f"known_{n}": known_s[n] for n in scores}, **{f"unknown_{n}": unknown_s[n] for n in scores}},
    }
