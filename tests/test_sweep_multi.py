"""dasslite.sweep.multi: ``--dataset all`` / a list as one plan and one pool, its order, progress and table.

Uses test_sweep's fake repository and fake train.py (base 80 + seed, new 60 + seed; all classes: training
40 + shots + seed), real subprocesses.
"""
import io
import os
import shutil
import subprocess
import sys

import pytest

from dasslite import sweep as S
from dasslite.sweep import multi as M
from tests.test_sweep import REPO, calls, fake_repo, write_record  # noqa: F401 (fixture)

EPOCHS = {"vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet": 10,
          "vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32": 50,
          "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32": 300,
          "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32": 25,
          "vit_b16_c4_ep10_batch32_cls_t2t_5_wcl_25_g1_b_lr32": 10}


@pytest.fixture
def fake(fake_repo):  # noqa: F811 (the imported fixture)
    for cfg, epochs in EPOCHS.items():  # the recipes' MAX_EPOCH, which orders the pool
        (fake_repo.repo / "configs" / "trainers" / "MoCoOp" / f"{cfg}.yaml").write_text(
            f"OPTIM:\n  MAX_EPOCH: {epochs}\n")
    return fake_repo


def parse(fake, protocol, argv):
    return S.parse_args([protocol, "--repo-root", str(fake.repo), "--output", str(fake.out), *argv])


def specs_for(fake, protocol, argv):
    return M.resolve_specs(parse(fake, protocol, argv), environ={"DATA": str(fake.data)}, cwd=str(fake.tmp))


def run_main(fake, protocol, argv, runner=None):
    env = {**os.environ, "FAKE_CALLS": str(fake.calls), "DATA": str(fake.data)}
    env.pop("GPUS", None)
    return S.main([protocol, "--repo-root", str(fake.repo), "--output", str(fake.out), *argv], environ=env,
                  runner=runner)


def test_dataset_names_all_and_lists():
    assert M.split_names("all") == list(S.XD_DATASETS) and len(S.XD_DATASETS) == 11
    assert M.split_names("eurosat,dtd oxford_pets, dtd") == ["eurosat", "dtd", "oxford_pets"]
    assert M.split_names("eurosat all")[:2] == ["eurosat", "imagenet"] and len(M.split_names("eurosat all")) == 11
    multi = S.parse_args(["base2new", "--dataset", "eurosat,dtd"])
    assert M.is_multi(multi) and M.is_multi(S.parse_args(["fewshot", "--dataset", "all"]))
    assert not M.is_multi(S.parse_args(["base2new", "--dataset", "eurosat"]))
    assert M.is_multi(S.parse_args(["base2new", "--dataset", "eurosat,"]))  # a list of one, not "eurosat,.yaml"
    assert not M.is_multi(S.parse_args(["xd", "--targets", "dtd", "eurosat"]))  # xd/dg keep their targets


def test_plan_for_all_every_dataset_seed_and_phase_longest_first(fake):
    specs = specs_for(fake, "base2new", ["--trainer", "MoCoOp", "--dataset", "all"])
    assert [s.dataset for s in specs] == list(S.XD_DATASETS)
    assert {s.dataset: s.cfg for s in specs} == {ds: S.default_cfg("MoCoOp", ds) for ds in S.XD_DATASETS}
    jobs, costs = M.combine(specs)
    assert len(jobs) == 11 * 3 * 2 and len({j.key for j in jobs}) == len(jobs)
    assert {(j.dataset, j.phase, j.seed) for j in jobs} == {
        (ds, phase, seed) for ds in S.XD_DATASETS for phase in ("train_base", "test_new") for seed in (1, 2, 3)}
    position = {j.key: i for i, j in enumerate(jobs)}
    for job in jobs:  # every evaluation after its own training, from that training's folder
        if job.phase == "test_new":
            train = f"{job.dataset}/train_base/seed{job.seed}"
            assert job.depends_on == [train] and position[train] < position[job.key]
            assert job.model_dir == jobs[position[train]].output_dir
    # cost = MAX_EPOCH x shots x base classes + half the test set / 3 (an evaluation: the last term only)
    assert costs["eurosat/train_base/seed1"] == 300 * 16 * 5 + 8100 / 2 / 3
    assert costs["imagenet/train_base/seed2"] == 10 * 16 * 500 + 50000 / 2 / 3
    assert costs["dtd/test_new/seed1"] == 1692 / 2 / 3
    assert [j.key for j in jobs[:3]] == [f"imagenet/train_base/seed{s}" for s in (1, 2, 3)]
    assert position["imagenet/train_base/seed3"] < position["eurosat/train_base/seed1"]
    assert position["eurosat/train_base/seed1"] < position["oxford_pets/train_base/seed1"]  # 300 epochs x 5 classes
    # the extra opts' MAX_EPOCH wins over the recipe's
    (specs_2,) = specs_for(fake, "base2new", ["--trainer", "MoCoOp", "--dataset", "eurosat,eurosat", "--seeds", "1",
                                              "--", "OPTIM.MAX_EPOCH", "2"])[:1]
    assert M.max_epoch(specs_2) == 2


def test_dry_run_prints_the_pool_order_and_runs_nothing(fake, capsys):
    rc = run_main(fake, "fewshot", ["--trainer", "MoCoOp", "--dataset", "all", "--shots", "1", "16", "--seeds", "1",
                                    "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and not fake.calls.exists() and not fake.out.exists()
    assert "fewshot: MoCoOp / per-dataset recipes on 11 datasets (imagenet, caltech101," in out
    assert "22 runs in one plan" in out and "Recipes: imagenet: vit_b16_c4_ep10_batch1_" in out
    lines = [l for l in out.splitlines() if l[:3].strip().rstrip(".").isdigit()]
    assert len(lines) == 22 and lines[0].startswith(" 1. [imagenet/shots_16/seed1] run; cost ")
    assert lines[-1].startswith("22. [") and "/shots_1/seed1] run; cost" in lines[-1]


def test_unknown_names_in_a_list_fail_before_anything_runs(fake, capsys):
    rc = run_main(fake, "base2new", ["--dataset", "eurosat,dtdd,oxford_petz", "--seeds", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and not fake.calls.exists() and not fake.out.exists()
    assert "'dtdd' Did you mean: dtd?" in err and "'oxford_petz' Did you mean: oxford_pets" in err
    assert "Nothing was run" in err


def test_two_datasets_through_one_pool_then_a_rerun_skips_everything(fake, capsys):
    pool = S.GpuPoolRunner(["5", "6"], env={**os.environ, "FAKE_CALLS": str(fake.calls)}, poll_interval=0.02)
    argv = ["--trainer", "CoOp", "--dataset", "eurosat dtd", "--shots", "4", "--seeds", "1", "2", "--paper"]
    assert run_main(fake, "base2new", argv, runner=pool) == 0
    out = capsys.readouterr().out
    assert len(calls(fake)) == 8
    # one pool: the second dataset's jobs start while the first dataset's are still running
    events = [l.split("] ", 1)[1] for l in out.splitlines() if l.startswith("[gpu ")]
    first_dtd = min(i for i, e in enumerate(events) if e.startswith("start [dtd/"))
    last_eurosat = max(i for i, e in enumerate(events) if e.startswith("finished eurosat/"))
    assert first_dtd < last_eurosat
    assert "progress: 0/8 done (0 skipped), 0 running, 8 queued; time left: estimated once a run finishes" in out
    assert "progress: 8/8 done (0 skipped), 0 running, 0 queued; ~0s left (from 8 finished runs)" in out
    # one table: a row per dataset and the Average, the paper beside it
    assert "| dtd       | 81.50 ± 0.50 | 61.50 ± 0.50 | 70.10 ± 0.51 | 2       | 80.17" in out
    assert "| eurosat   | 81.50 ± 0.50 |" in out and "| Average   | 81.50        | 61.50 " in out
    # the same command again: nothing runs
    pool = S.GpuPoolRunner(["5", "6"], env={**os.environ, "FAKE_CALLS": str(fake.calls)}, poll_interval=0.02)
    assert run_main(fake, "base2new", argv, runner=pool) == 0
    out = capsys.readouterr().out
    assert len(calls(fake)) == 8 and out.count("(complete); skipping") == 8
    assert "progress: 8/8 done (8 skipped), 0 running, 0 queued" in out


def test_table_lists_datasets_not_run_yet_as_missing(fake, capsys):
    # the sequential runner (no GPUS): progress at each start and at the end
    assert run_main(fake, "fewshot", ["--trainer", "MoCoOp", "--dataset", "dtd,oxford_pets", "--shots", "2",
                                      "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert [c.split()[0] for c in calls(fake)] == ["train", "train"]
    assert "progress: 0/2 done (0 skipped), 1 running, 1 queued; time left: estimated once a run finishes" in out
    assert "progress: 1/2 done (0 skipped), 1 running, 0 queued; ~" in out
    assert "progress: 2/2 done (0 skipped), 0 running, 0 queued; ~0s left (from 2 finished runs)" in out
    specs = specs_for(fake, "fewshot", ["--trainer", "MoCoOp", "--dataset", "eurosat,dtd", "--shots", "2",
                                        "--seeds", "1"])
    text = M.format_table(specs)
    assert "MoCoOp / per-dataset recipes" in text
    assert "| dtd       | 43.00 ± 0.00 | 1 " in text and "| eurosat   | -            | 0 " in text
    assert "| Average   | 43.00 (1/2)  |" in text  # 40 + 2 shots + seed 1, over the one dataset that has it
    assert "Missing runs (not averaged): 1" in text and "eurosat/shots_2/MoCoOp" in text
    assert "not run (no such folder)" in text


def test_progress_estimate_from_finished_runs(tmp_path):
    now = [100.0]
    jobs = [S.Job(k, "train", 1, str(tmp_path / k), [], False) for k in ("a", "b", "c", "d")]
    progress = M.Progress(jobs, {"a": 100.0, "b": 300.0, "c": 210.0, "d": 50.0}, workers=2, out=io.StringIO(),
                          clock=lambda: now[0])
    assert progress.seconds_left() is None and "time left: estimated once a run finishes" in progress.line()
    progress.start(jobs[0])
    progress.start(jobs[3])
    now[0] = 110.0
    write_record(str(tmp_path / "a"))
    progress.finish(jobs[0], 0)  # 10 s for 100 units: 0.1 s per unit
    progress.finish(jobs[3], 1)  # a failure: no rate, not queued again
    progress.start(jobs[1])
    now[0] = 115.0  # b: 30 s expected, 5 s done; c: 21 s queued; two workers
    assert progress.seconds_left() == pytest.approx((25.0 + 21.0) / 2)
    assert progress.line() == ("progress: 1/4 done (0 skipped), 1 running, 1 queued, 1 failed; ~23s left "
                               "(from 1 finished run)")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_wrappers_take_all_and_lists(fake):
    env = {**os.environ, "PYTHON": sys.executable, "OUTPUT": str(fake.out), "DATA": str(fake.data)}
    for key in ("GPUS", "CFG", "LOADEP"):
        env.pop(key, None)

    def bash(script, *args):
        return subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args, "--repo-root", str(fake.repo),
                               "--dry-run"], cwd=str(fake.tmp), env=env, capture_output=True, text=True)

    proc = bash("mocoop/base2new.sh", "all", "16", "1")
    assert proc.returncode == 0, proc.stderr
    assert "on 11 datasets" in proc.stdout and "22 runs in one plan" in proc.stdout
    proc = bash("coop/base2new.sh", "eurosat dtd", "8", "1,2")
    assert proc.returncode == 0, proc.stderr
    assert "CoOp / vit_b16_ctxv1 on 2 datasets (eurosat, dtd), shots 8, seeds 1 2: 8 runs" in proc.stdout
    proc = bash("zsclip/base2new.sh", "eurosat,dtd")
    assert proc.returncode == 0, proc.stderr
    assert "ZeroshotCLIP / vit_b16 on 2 datasets (eurosat, dtd), shots 16, seeds 1 2 3: 12 runs" in proc.stdout
    proc = bash("lasp/fewshot.sh", "eurosat,dtdd")
    assert proc.returncode == 2 and "'dtdd' Did you mean: dtd?" in proc.stderr
