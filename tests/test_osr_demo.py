"""`bash scripts/fsmoe/osr.sh demo` (the README's command) end to end on the offline demo world: the demo's trainers side by side, the
base2new training reused through its checkpoint, finished runs skipped on a rerun."""
import json
import os
import subprocess
import sys

import pytest

from dasslite.sweep.osr import DEMO_TRAINERS
from tests.demo_fixtures import build_or_get_session_demo_world, session_demo_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(args, env):
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "fsmoe", "osr.sh"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def record(output, *parts):
    with open(os.path.join(output, *parts)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    build_or_get_session_demo_world(tmp_path_factory)
    env = dict(os.environ, PYTHON=sys.executable, DASSLITE_DEMO_DIR=str(session_demo_cache(tmp_path_factory)),
               OUTPUT=str(tmp_path_factory.mktemp("output")), OMP_NUM_THREADS="1")
    env.pop("DATA", None)
    return env


def test_osr_demo_end_to_end(demo_env):
    out = demo_env["OUTPUT"]
    text = run_script(["demo", "1"], demo_env)
    table = text[text.rindex("Open-set recognition: demo"):]
    header = next(line for line in table.splitlines() if line.startswith("| Metric"))
    assert DEMO_TRAINERS[0] == "FSMoE" and all(f"{t} (demo)" in header for t in DEMO_TRAINERS)
    for row in ("| ACC", "| AUROC", "| OSCR", "| FPR95", "| Runs"):
        assert row in table

    run = ("osr", "base_new", "demo", "shots_4", "CoCoOp", "demo", "seed1")
    osr_record = record(out, *run, "osr_results.json")
    train = record(out, "base2new", "train_base", "demo", "shots_4", "CoCoOp", "demo", "seed1", "results.json")
    # the open-set run loaded the base2new checkpoint: same model, same base test images, same accuracy
    train_dir = os.path.join("base2new", "train_base", "demo", "shots_4", "CoCoOp", "demo", "seed1")
    assert osr_record["eval_only"] and osr_record["model_dir"].endswith(train_dir) and not train["eval_only"]
    assert osr_record["osr"]["metrics"]["mls"]["acc"] == pytest.approx(train["accuracy"], abs=1e-9)
    assert osr_record["osr"]["num_known"] == 150 and osr_record["osr"]["num_unknown"] == 150
    assert osr_record["osr"]["threshold_source"] == "val" and osr_record["osr"]["metrics"]["msp"]["macro_f1"] > 0
    assert os.path.getsize(os.path.join(out, *run, "osr_scores.npz")) > 0
    zs = record(out, "osr", "base_new", "demo", "shots_4", "ZeroshotCLIP", "demo", "seed1", "osr_results.json")
    # golden numbers of the demo world (zero-shot CLIP on the 5 base classes; new classes unknown), CPU
    assert zs["osr"]["metrics"]["mls"]["acc"] == pytest.approx(59.33, abs=3.0)
    assert zs["osr"]["metrics"]["mls"]["auroc"] == pytest.approx(83.56, abs=5.0)
    assert osr_record["osr"]["metrics"]["mls"]["acc"] > zs["osr"]["metrics"]["mls"]["acc"] + 10
    # CoCoOp's golden numbers (seed 1, 4 shots, 10 epochs), CPU; tolerance covers BLAS differences
    assert osr_record["osr"]["metrics"]["mls"]["acc"] == pytest.approx(88.0, abs=5.0)
    assert osr_record["osr"]["metrics"]["mls"]["auroc"] == pytest.approx(93.88, abs=5.0)

    fsmoe = record(out, "osr", "base_new", "demo", "shots_4", "FSMoE", "demo", "seed1", "osr_results.json")
    assert fsmoe["osr"]["metrics"]["mls"]["acc"] > zs["osr"]["metrics"]["mls"]["acc"] + 10  # FSMoE learned too

    again = run_script(["demo", "1"], demo_env)  # everything finished: skipped, nothing trained or evaluated
    # FSMoE and CoCoOp: their base2new training and their open-set run; zero-shot CLIP: its open-set run
    assert again.count("skipping") == 5 and "epoch [" not in again and "=> open-set result" not in again
