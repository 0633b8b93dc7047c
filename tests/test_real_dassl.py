"""The same CoOp / zero-shot / MoCoOp runs under real Dassl.pytorch, when it is installed (it is not on PyPI).

Each run is a subprocess with ``DASSLITE_BACKEND=dassl`` so that ``dasslite.compat`` binds our trainers and
dataset readers to Dassl's registries, base classes and DataManager.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dassl") is None,
    reason="Dassl.pytorch is not installed (not on PyPI): install it from source to run these under real Dassl",
)


def _run(args, tmp_path):
    pythonpath = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, DASSLITE_BACKEND="dassl", PYTHONPATH=pythonpath)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("trainer,config,flags", [("CoOp", "CoOp/vit_b16_ep50", []),
                                                  ("ZeroshotCLIP", "ZeroshotCLIP/vit_b16", ["--eval-only"])])
def test_runs_under_real_dassl(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer, config, flags):
    out = tmp_path / trainer
    args = ["--root", eurosat_root, "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/eurosat.yaml", "--config-file", f"configs/trainers/{config}.yaml",
            "--output-dir", str(out), *flags, "MODEL.BACKBONE.NAME", tiny_clip_checkpoint, "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2",
            f"TRAINER.{'COOP' if trainer == 'CoOp' else 'ZSCLIP'}.PREC", "fp32"]
    stdout = _run(args, tmp_path)
    assert "Engine: dassl" in stdout
    record = json.loads((out / "results.json").read_text())
    assert record["engine"] == "dassl" and record["total"] > 0


def test_mocoop_base_then_new_under_real_dassl(eurosat_root, tiny_clip_checkpoint, tmp_path):
    """MoCoOp through Dassl's DataManager and TrainerX: virtual classes rebuilt with Dassl's reader, checkpoint
    saved by Dassl, loaded by ours (expert definition checked), evaluation on the new classes."""
    common = ["--root", eurosat_root, "--seed", "1", "--trainer", "MoCoOp",
              "--dataset-config-file", "configs/datasets/eurosat.yaml",
              "--config-file", "configs/trainers/MoCoOp/vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32.yaml"]
    opts = ["MODEL.BACKBONE.NAME", tiny_clip_checkpoint, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0", "DATASET.NUM_SHOTS", "2",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "TRAINER.MOCOOP.PREC", "fp32"]
    base, new = tmp_path / "base", tmp_path / "new"
    stdout = _run(common + ["--output-dir", str(base), *opts, "DATASET.SUBSAMPLE_CLASSES", "base"], tmp_path)
    assert "Engine: dassl" in stdout and "(5 with images + 5 virtual)" in stdout
    assert (base / "prompt_learner" / "model.pth.tar-1").is_file() and (base / "expert_usage.png").is_file()
    _run(common + ["--output-dir", str(new), "--eval-only", "--model-dir", str(base), *opts,
                   "DATASET.SUBSAMPLE_CLASSES", "new"], tmp_path)
    record = json.loads((new / "results.json").read_text())
    assert record["engine"] == "dassl" and record["subsample_classes"] == "new" and record["total"] > 0


def test_our_fewshot_cache_is_read_by_dassl_as_its_own_datum(tmp_path):
    """The cache format a CoOp fork's reader expects: ``pickle.load`` gives Dassl's Datum objects."""
    import pickle

    from dassl.data.datasets.base_dataset import Datum as DasslDatum

    from dasslite.data.datasets.base_dataset import Datum
    from dasslite.data.datasets.datum_pickle import dump_dassl_format

    image = tmp_path / "x.jpg"
    image.write_bytes(b"not read")
    path = dump_dassl_format(str(tmp_path / "shot_1-seed_1.pkl"),
                             {"train": [Datum(impath=str(image), label=3, classname="c")], "val": []})
    with open(path, "rb") as f:
        (item,) = pickle.load(f)["train"]
    assert type(item) is DasslDatum and (item.impath, item.label, item.classname) == (str(image), 3, "c")
