"""train.py with OSR.ENABLED on an open-set benchmark (tiny CIFAR files): train on the known classes, evaluate
open-set, write osr_results.json; a failing open-set evaluation leaves the earlier record untouched."""
import json
import os

import numpy as np
import pytest

from dasslite.evaluation.open_set import OpenSetSetupError
from tests.test_osr_datasets import make_cifar10
from tests.trainer_harness import run_train


def test_train_then_open_set_on_cifar10(tmp_path, tiny_clip_checkpoint):
    make_cifar10(str(tmp_path))
    out = str(tmp_path / "run")
    extra = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2",
             "OSR.ENABLED", "True", "OSR.SPLIT", "1", "OSR.BALANCE", "with_replacement"]
    res = run_train(str(tmp_path), tiny_clip_checkpoint, out, dataset_config="configs/datasets/osr_cifar10.yaml",
                    extra=extra)
    assert res["complete"] and res["dataset"] == "CIFAR10OSR" and res["total"] == 12
    with open(os.path.join(out, "osr_results.json")) as f:
        rec = json.load(f)
    osr = rec["osr"]
    assert rec["complete"] and rec["osr_split"] == 1 and rec["balance"] == "with_replacement"
    assert osr["known_classes"] == ["horse", "frog", "deer", "truck", "airplane", "automobile"]  # [7, 6, 4, 9, 0, 1]
    assert osr["unknown_classes"] == ["bird", "cat", "dog", "ship"]
    # 12 known vs 8 unknown test images: the known side is drawn down to 8 with replacement
    assert osr["num_known"] == 8 and osr["num_unknown"] == 8 and osr["threshold_source"] == "val"
    assert osr["num_val_known"] == 6 and osr["num_val_unknown"] == 4
    for score in ("mls", "msp", "mcm", "energy", "entropy"):
        m = osr["metrics"][score]
        assert 0 <= m["auroc"] <= 100 and m["oscr"] == pytest.approx(m["open_auc"]) and m["oscr"] <= m["acc"] + 1e-9
    with np.load(os.path.join(out, "osr_scores.npz")) as scores:
        assert scores["known_mls"].shape == (8,) and scores["unknown_energy"].shape == (8,)
        assert np.all(scores["known_msp"] <= 1.0)

    before = open(os.path.join(out, "osr_results.json"), "rb").read()
    with pytest.raises(OpenSetSetupError, match='OSR.BALANCE "vaze" is not one of'):
        run_train(str(tmp_path), tiny_clip_checkpoint, str(tmp_path / "run"),
                  dataset_config="configs/datasets/osr_cifar10.yaml", flags=["--eval-only", "--model-dir", out],
                  extra=extra[:-2] + ["OSR.BALANCE", "vaze"])
    assert open(os.path.join(out, "osr_results.json"), "rb").read() == before


def test_open_set_on_a_coop_dataset_needs_base_classes(tmp_path, tiny_clip_checkpoint, eurosat_root):
    extra = ["TRAINER.ZSCLIP.PREC", "fp32", "OSR.ENABLED", "True", "DATASET.NUM_SHOTS", "2"]
    with pytest.raises(OpenSetSetupError, match="needs DATASET.SUBSAMPLE_CLASSES base"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "r"), flags=["--eval-only"],
                  extra=extra, trainer="ZeroshotCLIP", config="vit_b16")


@pytest.mark.parametrize("trainer", ["ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp", "LASP", "MoCoOp"])
def test_every_trainer_evaluates_open_set(trainer, tmp_path, tiny_clip_checkpoint, eurosat_root):
    """The generic path: each trainer's own inference on base (known) and new (unknown) classes; the known-class
    accuracy of the open-set record equals the trainer's closed-set test."""
    from dasslite.evaluation.open_set import run_open_set
    from tests.trainer_harness import make_trainer

    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer=trainer, config="demo",
                      extra=["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "OSR.ENABLED", "True"])
    acc = tr.test()
    path = run_open_set(tr, {"seed": 1, "trainer": trainer})
    with open(path) as f:
        rec = json.load(f)
    assert rec["trainer"] == trainer and rec["osr"]["metrics"]["mls"]["acc"] == pytest.approx(acc)
    assert rec["osr"]["num_classes"] == 5 and len(rec["osr"]["unknown_classes"]) == 5
    assert rec["osr"]["logit_scale"] == pytest.approx(tr.model.logit_scale.detach().exp().item())
