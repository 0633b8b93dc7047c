"""The same CoOp / zero-shot runs under real Dassl.pytorch, when it is installed (it is not on PyPI).

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
