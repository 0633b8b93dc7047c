"""Open-set scores and metrics: hand-computed cases, brute force on random inputs with ties, balancing modes."""
import math

import numpy as np
import pytest

from dasslite import osr_metrics as osr


def brute_pairwise(known, correct, unknown):
    """(1/|K||U|) Σ_k Σ_u correct(k) · (1[S_k > S_u] + ½ 1[S_k = S_u])."""
    total = 0.0
    for s_k, ok in zip(known, correct):
        for s_u in unknown:
            if ok:
                total += 1.0 if s_k > s_u else (0.5 if s_k == s_u else 0.0)
    return total / (len(known) * len(unknown))


def brute_fpr95(known, unknown):
    best = 1.0
    for theta in np.r_[known, unknown]:
        if np.mean(known >= theta) >= 0.95:
            best = min(best, np.mean(unknown >= theta))
    return best


def brute_dtacc(known, unknown):
    thetas = np.r_[known, unknown, np.inf]
    return max(0.5 * (np.mean(known >= t) + np.mean(unknown < t)) for t in thetas)


@pytest.mark.parametrize("trial", range(6))
def test_oscr_open_auc_auroc_vs_brute_force_with_ties(trial):
    rng = np.random.default_rng(trial)
    nk, nu = rng.integers(3, 25), rng.integers(2, 20)
    known = rng.integers(0, 6, nk).astype(float)  # few distinct values: many ties, within and across the sets
    unknown = rng.integers(0, 6, nu).astype(float)
    correct = rng.random(nk) < 0.7
    want = brute_pairwise(known, correct, unknown)
    assert osr.oscr(known, correct, unknown) == pytest.approx(want, abs=1e-12)
    assert osr.open_auc(known, correct, unknown) == pytest.approx(want, abs=1e-12)
    assert osr.auroc(known, unknown) == pytest.approx(brute_pairwise(known, np.ones(nk, bool), unknown), abs=1e-12)
    assert osr.fpr_at_tpr(known, unknown) == pytest.approx(brute_fpr95(known, unknown))
    assert osr.detection_accuracy(known, unknown) == pytest.approx(brute_dtacc(known, unknown))


def test_oscr_curve_ends_at_accuracy_and_small_case():
    known = np.array([0.9, 0.8, 0.3])
    correct = np.array([True, False, True])
    unknown = np.array([0.5, 0.1])
    fpr, ccr = osr.oscr_curve(known, correct, unknown)
    assert fpr[0] == 0 and ccr[0] == 0 and fpr[-1] == 1 and ccr[-1] == pytest.approx(2 / 3)
    # pairs (k correct, k > u): 0.9 beats both, 0.3 beats 0.1 -> 3 of 6
    assert osr.oscr(known, correct, unknown) == pytest.approx(3 / 6)
    # an exact tie between a correct known and an unknown counts one half
    assert osr.oscr(np.array([1.0]), np.array([True]), np.array([1.0])) == pytest.approx(0.5)


def test_scores_hand_computed():
    scale = 10.0
    logits = np.array([[2.0, 0.0], [1.0, 1.0]])
    s = osr.knownness_scores(logits, scale)
    assert s["mls"].tolist() == [2.0, 1.0]
    assert s["msp"] == pytest.approx([1 / (1 + math.exp(-2)), 0.5])
    # MCM: softmax of cosine (= logits / scale) / T
    assert s["mcm"] == pytest.approx([1 / (1 + math.exp(-0.2)), 0.5])
    assert s["energy"] == pytest.approx([math.log(math.exp(2) + 1), math.log(2 * math.e)])
    p = 1 / (1 + math.exp(-2))
    assert s["entropy"] == pytest.approx([p * math.log(p) + (1 - p) * math.log(1 - p), math.log(0.5)])
    t = osr.knownness_scores(logits, scale, mcm_temperature=0.5, energy_temperature=2.0)
    assert t["mcm"][0] == pytest.approx(1 / (1 + math.exp(-0.4)))
    assert t["energy"][1] == pytest.approx(2.0 * math.log(2 * math.exp(0.5)))
    with pytest.raises(ValueError, match="unknown open-set score"):
        osr.knownness_scores(logits, scale, names=["maxlogit"])
    with pytest.raises(ValueError, match="must be > 0"):
        osr.knownness_scores(logits, 0.0)


def test_aupr_small_case():
    known, unknown = np.array([3.0, 1.0]), np.array([2.0])
    aupr_in, aupr_out = osr.aupr(known, unknown)
    assert aupr_in == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))  # precisions at the two known recalls
    assert aupr_out == pytest.approx(0.5)  # the unknown ranks second under -S


def test_balance_modes():
    k, u = osr.balance_indices(10, 4, "none")
    assert len(k) == 10 and len(u) == 4
    k, u = osr.balance_indices(10, 4, "with_replacement", seed=3)
    draw = np.random.RandomState(3).choice(10, size=4, replace=True)
    assert k.tolist() == draw.tolist() and u.tolist() == [0, 1, 2, 3]
    k, u = osr.balance_indices(4, 50, "dedup", seed=0)
    draw = np.random.RandomState(0).choice(50, size=4, replace=True)
    assert u.tolist() == sorted(set(draw.tolist())) and k.tolist() == [0, 1, 2, 3]
    # dedup drops repeats: with 1000 draws from 1000 about 63% are unique
    _, u = osr.balance_indices(1000, 1000 * 3, "dedup", seed=1)
    assert len(u) < 1000 and len(np.unique(u)) == len(u)
    _, u = osr.balance_indices(1000, 3000, "with_replacement", seed=1)
    assert len(u) == 1000 and len(np.unique(u)) < 1000
    with pytest.raises(ValueError, match="balance mode"):
        osr.balance_indices(3, 2, "vaze")


def test_macro_f1_threshold_and_evaluate():
    # two known classes; the unknowns score low on MLS
    known_logits = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0], [1.0, 4.5]])
    known_labels = np.array([0, 1, 1, 1])  # the third is misclassified
    unknown_logits = np.array([[1.0, 1.2], [0.5, 0.2]])
    f1 = osr.open_set_macro_f1(known_labels, known_logits.max(1), known_logits.argmax(1), unknown_logits.max(1),
                               unknown_logits.argmax(1), threshold=2.0, num_classes=2)
    # y_true 0 1 1 1 U U, y_pred 0 1 0 1 U U -> F1: class0 2/3, class1 0.8, unknown 1
    assert f1 == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)
    res = osr.evaluate_open_set(known_logits, known_labels, unknown_logits, logit_scale=10.0,
                                val_known_logits=known_logits, val_known_labels=known_labels,
                                val_unknown_logits=unknown_logits)
    m = res["metrics"]["mls"]
    assert m["acc"] == pytest.approx(75.0) and m["auroc"] == pytest.approx(100.0)
    assert m["oscr"] == pytest.approx(75.0) and m["open_auc"] == pytest.approx(75.0)
    assert m["macro_f1"] == pytest.approx(m["macro_f1_oracle"])  # same images for validation and test
    assert set(res["metrics"]) == set(osr.SCORES)
    assert res["per_image"]["unknown_mls"].tolist() == [1.2, 0.5]
    no_val = osr.evaluate_open_set(known_logits, known_labels, unknown_logits, logit_scale=10.0)
    assert no_val["metrics"]["msp"]["macro_f1"] is None and no_val["threshold_source"] is None
    with pytest.raises(ValueError, match="expected \\[N, 2\\]"):
        osr.evaluate_open_set(known_logits, known_labels, np.zeros((2, 3)), logit_scale=1.0)


@pytest.mark.parametrize("trial", range(4))
def test_macro_f1_sweep_equals_sklearn_at_every_threshold(trial):
    rng = np.random.default_rng(100 + trial)
    nk, nu, c = 30, 12, 4
    known_labels = rng.integers(0, c, nk)
    known_pred = np.where(rng.random(nk) < 0.7, known_labels, rng.integers(0, c, nk))
    unknown_pred = rng.integers(0, c, nu)
    known_scores, unknown_scores = rng.integers(0, 8, nk).astype(float), rng.integers(0, 8, nu).astype(float)
    thresholds = osr.candidate_thresholds(np.r_[known_scores, unknown_scores])
    sweep = osr.macro_f1_sweep(known_labels, known_scores, known_pred, unknown_scores, unknown_pred, thresholds)
    for theta, f1 in zip(thresholds, sweep):
        want = osr.open_set_macro_f1(known_labels, known_scores, known_pred, unknown_scores, unknown_pred, theta, c)
        assert f1 == pytest.approx(want, abs=1e-12)
    theta, best = osr.best_threshold(known_labels, known_scores, known_pred, unknown_scores, unknown_pred, c)
    assert best == pytest.approx(sweep.max()) and theta == thresholds[np.argmax(sweep)]


def test_benchmark_script_smoke(tmp_path):
    """benchmarks/bench_osr.py on a tiny case: both threshold searches agree and the numbers are written."""
    import json

    from benchmarks import bench_osr
    out = tmp_path / "osr.json"
    assert bench_osr.main(["--known", "60", "--unknown", "40", "--classes", "3", "--repeats", "1",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["thresholds"] == 101 and result["speedup_f1_search"] > 0
