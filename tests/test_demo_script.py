"""The README's main job end to end: `bash scripts/coop/base2new.sh demo 4` (and zero-shot beside it) on the demo
world, exactly as a newcomer runs it, with golden numbers so a change that silently alters results fails."""
import json
import os
import subprocess
import sys

import pytest

from tests.demo_fixtures import build_or_get_session_demo_world, session_demo_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(script, args, env):
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _accuracies(output, phase, trainer, cfg):
    base = os.path.join(output, "base2new", phase, "demo", "shots_4", trainer, cfg)
    accs = []
    for seed in (1, 2, 3):
        with open(os.path.join(base, f"seed{seed}", "results.json")) as f:
            record = json.load(f)
        assert record["complete"] and record["seed"] == seed and record["num_shots"] == 4
        accs.append(record["accuracy"])
    return sum(accs) / 3


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    build_or_get_session_demo_world(tmp_path_factory)  # the world the session already built (or builds now)
    env = dict(os.environ, PYTHON=sys.executable, DASSLITE_DEMO_DIR=str(session_demo_cache(tmp_path_factory)),
               OUTPUT=str(tmp_path_factory.mktemp("output")))
    env.pop("DATA", None)
    return env


def test_coop_demo_base2new_prints_the_table_and_beats_zero_shot(demo_env):
    out = _run_script("coop/base2new.sh", ["demo", "4"], demo_env)
    table = out[out.index("Base-to-new"):]
    assert "| demo" in table and "Base" in table and "New" in table and "H " in table
    base = _accuracies(demo_env["OUTPUT"], "train_base", "CoOp", "demo")
    new = _accuracies(demo_env["OUTPUT"], "test_new", "CoOp", "demo")
    h = 2 * base * new / (base + new)
    assert f"{h:.2f}" in table

    zs_out = _run_script("zsclip/base2new.sh", ["demo"], dict(demo_env, SHOTS="4"))  # same folder layout
    assert "ZeroshotCLIP" in zs_out
    zs_base = _accuracies(demo_env["OUTPUT"], "train_base", "ZeroshotCLIP", "demo")
    zs_new = _accuracies(demo_env["OUTPUT"], "test_new", "ZeroshotCLIP", "demo")
    # Golden numbers of the demo world (seeds 1-3, 4 shots), measured on CPU; tolerance covers BLAS differences.
    assert zs_base == pytest.approx(59.33, abs=3.0) and zs_new == pytest.approx(70.67, abs=3.0)
    assert base == pytest.approx(86.67, abs=5.0) and new == pytest.approx(96.0, abs=5.0)
    assert base > zs_base + 10  # prompt learning has something to learn

    # Rerunning skips every finished run instead of training again.
    again = _run_script("coop/base2new.sh", ["demo", "4"], demo_env)
    assert again.count("skipping") >= 6 and "epoch [" not in again


def test_mocoop_demo_base2new_the_readme_first_command(demo_env):
    out = _run_script("mocoop/base2new.sh", ["demo", "4"], demo_env)
    table = out[out.index("Base-to-new"):]
    assert "| demo" in table and "MoCoOp" in table
    base = _accuracies(demo_env["OUTPUT"], "train_base", "MoCoOp", "demo")
    new = _accuracies(demo_env["OUTPUT"], "test_new", "MoCoOp", "demo")
    assert f"{2 * base * new / (base + new):.2f}" in table
    # Golden numbers (seeds 1-3, 4 shots, the demo's own template groups), measured on CPU.
    assert base == pytest.approx(86.0, abs=5.0) and new == pytest.approx(94.4, abs=5.0)
    # every run leaves its routing next to its results
    run = os.path.join(demo_env["OUTPUT"], "base2new", "test_new", "demo", "shots_4", "MoCoOp", "demo", "seed1")
    for name in ("expert_usage.json", "expert_usage.csv", "expert_usage.png"):
        assert os.path.getsize(os.path.join(run, name)) > 0
