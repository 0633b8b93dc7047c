"""The SLURM launcher (dasslite.sweep.slurm): options, job scripts, dependency arrays, and sweeps through a real
single-node SLURM cluster on localhost (tests/slurm_cluster.py): same table as the local run, failures reported
with their logs, nothing submitted twice, and a requeued task resumes from its checkpoint."""
import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dasslite import sweep as S
from dasslite.sweep import slurm as SL
from tests import slurm_cluster
from tests.test_sweep import FAKE_TRAIN_PY, calls, fake_repo  # noqa: F401  (fake_repo is a fixture)

NO_CLUSTER = slurm_cluster.missing_reason()
needs_cluster = pytest.mark.skipif(bool(NO_CLUSTER), reason=NO_CLUSTER or "ok")

# The fake train.py, plus FAKE_SLEEP="<phase>:<seed>:<seconds>": sleep after the first checkpoint of a fresh run
# (so a test can requeue the task while it runs); a resumed run does not sleep.
SLEEPY_TRAIN_PY = FAKE_TRAIN_PY.replace(
    '    log.write("epoch [1/1] batch [1/1]\\n")\n',
    '    log.write("epoch [1/1] batch [1/1]\\n")\n'
    '    log.flush()\n'
    '    sleep = os.environ.get("FAKE_SLEEP", "::").split(":")\n'
    '    if not resumed and sleep[:2] == [phase, str(a.seed)]:\n'
    '        open(os.path.join(out, "sleeping"), "w").write("1")\n'
    '        import time; time.sleep(float(sleep[2]))\n')
assert SLEEPY_TRAIN_PY != FAKE_TRAIN_PY


def args_of(**kw):
    base = dict(launcher=None, partition=None, account=None, time=None, gpus_per_task=None, cpus_per_task=None,
                mem=None, sbatch_line=None, max_concurrent=None, wait=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_options_from_flags_then_environment_with_named_errors():
    env = {"SWEEP_PARTITION": "env-part", "SWEEP_TIME": "2:00:00", "SWEEP_SBATCH": "qos=high; --exclusive",
           "SWEEP_MAX_CONCURRENT": "3", "SWEEP_WAIT": "1", "LAUNCHER": "slurm"}
    opts = SL.options_from(args_of(partition="gpu", gpus_per_task="2"), env)
    assert (opts.partition, opts.time, opts.gpus_per_task, opts.max_concurrent, opts.wait) == \
        ("gpu", "2:00:00", 2, 3, True)
    header = opts.header()
    assert "#SBATCH --partition=gpu" in header and "#SBATCH --gpus-per-task=2" in header
    assert "#SBATCH --qos=high" in header and "#SBATCH --exclusive" in header and "#SBATCH --requeue" in header
    assert SL.launcher_from(args_of(), env) == "slurm" and SL.launcher_from(args_of(), {}) == "local"
    with pytest.raises(ValueError, match="LAUNCHER='slrum' is not one of local, slurm"):
        SL.launcher_from(args_of(), {"LAUNCHER": "slrum"})
    with pytest.raises(ValueError, match="SWEEP_MAX_CONCURRENT must be a positive whole number"):
        SL.options_from(args_of(), {"SWEEP_MAX_CONCURRENT": "lots"})
    with pytest.raises(ValueError, match="--gpus-per-task must be a positive whole number"):
        SL.options_from(args_of(gpus_per_task="0"), {})


def _xd_spec(fake):
    args = S.parse_args(["xd", "--repo-root", str(fake.repo), "--output", str(fake.out), "--data", str(fake.data),
                         "--targets", "dtd", "food101", "--seeds", "1", "2"])
    return S.resolve_spec(args, environ={}, cwd=str(fake.tmp))


def test_arrays_group_runs_by_what_they_wait_for(fake_repo):
    jobs = S.plan(_xd_spec(fake_repo))
    arrays = SL.SlurmRunner._arrays(jobs, queued={})
    assert [([j.key for j in a], deps) for a, deps in arrays] == [
        (["train/seed1", "train/seed2"], ()),
        (["test/dtd/seed1", "test/food101/seed1"], ("train/seed1",)),
        (["test/dtd/seed2", "test/food101/seed2"], ("train/seed2",))]
    # a training already queued in SLURM by an earlier sweep: its evaluations wait for that task
    arrays = SL.SlurmRunner._arrays([j for j in jobs if j.key != "train/seed1"], queued={"train/seed1": "7_0"})
    assert sorted(([j.key for j in a], deps) for a, deps in arrays) == [
        (["test/dtd/seed1", "test/food101/seed1"], ("train/seed1",)),
        (["test/dtd/seed2", "test/food101/seed2"], ("train/seed2",)),
        (["train/seed2"], ())]


def test_dry_run_prints_the_job_scripts_and_submits_nothing(fake_repo, capsys):
    env = {"SWEEP_SBATCH_CMD": "/nonexistent/sbatch", "SWEEP_SQUEUE_CMD": "/nonexistent/squeue"}
    argv = ["base2new", "--repo-root", str(fake_repo.repo), "--dataset", "eurosat", "--data", str(fake_repo.data),
            "--output", str(fake_repo.out), "--seeds", "1", "2", "--launcher", "slurm", "--partition", "gpu",
            "--max-concurrent", "4", "--dry-run"]
    assert S.main(argv, environ=env) == 0
    out = capsys.readouterr().out
    assert "# array 0: 2 task(s): train_base/seed1, train_base/seed2" in out
    assert "#SBATCH --array=0-1%4" in out and "#SBATCH --partition=gpu" in out
    assert "--dependency=afterok:<train_base/seed2>" in out
    assert "-m dasslite.sweep.slurm_task " in out
    assert not fake_repo.out.exists()  # nothing written, nothing submitted


def test_the_task_entry_runs_one_task_and_refuses_other_arguments(tmp_path):
    """What the job scripts run on a compute node, without SLURM: its exit status is train.py's, its console kept."""
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-c", "import sys; print('trained'); sys.exit(3)"]
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"key": "train/seed1", "output_dir": str(run_dir), "argv": argv, "cwd": None}]))
    entry = [sys.executable, "-m", "dasslite.sweep.slurm_task"]
    proc = subprocess.run(entry + [str(tasks), "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "train.py exited 3" in proc.stdout
    assert "trained" in (run_dir / "console.txt").read_text()
    bad = subprocess.run(entry + ["task", str(tasks), "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage: python -m dasslite.sweep.slurm_task TASKS_JSON INDEX" in bad.stderr


def test_gpus_with_the_slurm_launcher_names_the_slurm_option(fake_repo, capsys):
    argv = ["base2new", "--repo-root", str(fake_repo.repo), "--dataset", "eurosat", "--data", str(fake_repo.data),
            "--output", str(fake_repo.out), "--launcher", "slurm", "--gpus", "0,1"]
    assert S.main(argv, environ={}) == 2
    assert "--gpus-per-task" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# a real cluster
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if NO_CLUSTER:
        pytest.skip(NO_CLUSTER)
    c = slurm_cluster.start_cluster(tmp_path_factory.mktemp("slurm"))
    yield c
    c.stop()


def sweep(fake, cluster, extra=(), env_extra=None, output=None):
    env = {**cluster.env, "FAKE_CALLS": str(fake.calls), "SWEEP_POLL": "0.5", **(env_extra or {})}
    env.pop("GPUS", None)
    argv = ["base2new", "--repo-root", str(fake.repo), "--dataset", "eurosat", "--shots", "8", "--seeds", "1", "2",
            "--data", str(fake.data), "--output", str(output or fake.out), *extra]
    return S.main(argv, environ=env)


def wait_idle(cluster, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not cluster.run("squeue", "-h", "-o", "%i").strip():
            return
        time.sleep(0.5)
    raise AssertionError("SLURM queue did not drain:\n" + cluster.run("squeue"))


def table_of(out):
    return out[out.index("Base-to-new"):]


@needs_cluster
def test_slurm_sweep_gives_the_local_table_and_a_rerun_submits_nothing(fake_repo, cluster, capsys):
    assert sweep(fake_repo, cluster, output=fake_repo.tmp / "local") == 0
    local = table_of(capsys.readouterr().out)
    assert sweep(fake_repo, cluster, ["--launcher", "slurm", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 task(s) as SLURM array" in out and "after train_base/seed1" in out
    assert table_of(out).replace(str(fake_repo.tmp / "local"), str(fake_repo.out)) == local
    run = fake_repo.out / "base2new" / "train_base" / "eurosat" / "shots_8" / "CoOp" / "vit_b16_ctxv1" / "seed1"
    marker = json.loads((run / SL.MARKER_FILE).read_text())
    assert os.path.isfile(marker["log"]) and "==> SLURM job" in (run / "console.txt").read_text()
    n_calls = len(calls(fake_repo))
    # the same command again: everything is complete, nothing goes to SLURM
    assert sweep(fake_repo, cluster, ["--launcher", "slurm", "--wait"]) == 0
    out = capsys.readouterr().out
    assert out.count("(complete); skipping") == 4 and "as SLURM array" not in out
    assert len(calls(fake_repo)) == n_calls


@needs_cluster
def test_a_failed_task_is_reported_with_its_logs_and_its_evaluation_is_cancelled(fake_repo, cluster, capsys):
    rc = sweep(fake_repo, cluster, ["--launcher", "slurm", "--wait"], {"FAKE_FAIL": "train_base:1"})
    assert rc == 1
    err = capsys.readouterr().err
    seed1 = os.path.join(str(fake_repo.out), "base2new", "train_base", "eurosat", "shots_8", "CoOp",
                         "vit_b16_ctxv1", "seed1")
    assert "train_base/seed1: SLURM task" in err and "ended without a complete results.json" in err
    assert f"console:    {os.path.join(seed1, 'console.txt')}" in err and "RuntimeError: boom" in err
    assert "SLURM log:  " in err
    assert "test_new/seed1: not run: train_base/seed1 failed before it" in err
    assert "test_new/seed2" not in err  # seed 2 waited only for its own training, which succeeded
    wait_idle(cluster)
    # fixed and re-run: seed 2 is skipped, seed 1 resumes in its folder
    assert sweep(fake_repo, cluster, ["--launcher", "slurm", "--wait"]) == 0
    out = capsys.readouterr().out
    assert out.count("(complete); skipping") == 2 and "submitted 1 task(s)" in out
    assert json.load(open(os.path.join(seed1, "results.json")))["resumed"] is True


@needs_cluster
def test_a_multi_dataset_sweep_goes_to_slurm_as_one_plan(fake_repo, cluster, capsys):
    env = {**cluster.env, "FAKE_CALLS": str(fake_repo.calls), "SWEEP_POLL": "0.5"}
    argv = ["base2new", "--repo-root", str(fake_repo.repo), "--dataset", "eurosat,dtd", "--shots", "8", "--seeds",
            "1", "--data", str(fake_repo.data), "--output", str(fake_repo.out), "--launcher", "slurm", "--wait"]
    assert S.main(argv, environ=env) == 0
    out = capsys.readouterr().out
    assert "submitted 2 task(s) as SLURM array" in out  # both trainings in one array, then one per evaluation
    assert "| eurosat" in out and "| dtd" in out and len(calls(fake_repo)) == 4


@needs_cluster
def test_without_wait_a_rerun_does_not_submit_twice_and_prints_what_is_done(fake_repo, cluster, capsys):
    fake_repo.repo.joinpath("train.py").write_text(SLEEPY_TRAIN_PY)
    env = {"FAKE_SLEEP": "train_base:2:4"}
    assert sweep(fake_repo, cluster, ["--launcher", "slurm"], env) == 0
    out = capsys.readouterr().out
    assert "not waiting (--wait blocks)" in out
    assert sweep(fake_repo, cluster, ["--launcher", "slurm"], env) == 0
    out = capsys.readouterr().out
    assert out.count("not submitted again") == 4 - out.count("(complete); skipping") and "as SLURM array" not in out
    wait_idle(cluster)
    assert sweep(fake_repo, cluster, ["--launcher", "slurm"], env) == 0
    out = capsys.readouterr().out
    assert out.count("(complete); skipping") == 4 and "| eurosat" in out
    assert sorted(c.split()[0] + c.split()[1] for c in calls(fake_repo)) == \
        ["test_new1", "test_new2", "train_base1", "train_base2"]  # each run trained once


@needs_cluster
def test_a_requeued_task_resumes_from_its_checkpoint(fake_repo, cluster, capsys):
    fake_repo.repo.joinpath("train.py").write_text(SLEEPY_TRAIN_PY)
    env = {"FAKE_SLEEP": "train_base:1:60"}
    assert sweep(fake_repo, cluster, ["--launcher", "slurm", "--seeds", "1"], env) == 0
    capsys.readouterr()
    run = fake_repo.out / "base2new" / "train_base" / "eurosat" / "shots_8" / "CoOp" / "vit_b16_ctxv1" / "seed1"
    job_id = json.loads((run / SL.MARKER_FILE).read_text())["job_id"]
    deadline = time.time() + 60
    while not (run / "sleeping").exists():
        assert time.time() < deadline, cluster.run("squeue")
        time.sleep(0.3)
    cluster.run("scontrol", "requeue", job_id)  # what preemption with requeue does to a running task
    # SLURM holds a requeued job for about two minutes before it is eligible again; the test need not wait for that,
    # but it lets the first start end completely (the task body has reported train.py's exit) before the second
    log = json.loads((run / SL.MARKER_FILE).read_text())["log"]
    deadline = time.time() + 30
    while "PENDING" not in cluster.run("squeue", "-h", "-j", job_id, "-o", "%T") or \
            "train.py exited" not in open(log).read():
        assert time.time() < deadline, cluster.run("squeue") + open(log).read()
        time.sleep(0.3)
    time.sleep(2)  # slurmd's clean-up of the first start's step
    cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    wait_idle(cluster, timeout=180)
    console = (run / "console.txt").read_text()
    assert (run / "results.json").exists(), console + open(log).read()
    record = json.loads((run / "results.json").read_text())
    assert record["complete"] and record["resumed"] is True
    assert "(restart 0)" in console and "(restart 1)" in console
    assert [c.split()[0] for c in calls(fake_repo)].count("train_base") == 2


@needs_cluster
def test_demo_sweep_through_slurm_gives_the_local_table(cluster, tmp_path_factory, capsys):
    """The real train.py on the demo world: one seed of CoOp base2new, locally and through SLURM."""
    from tests.demo_fixtures import build_or_get_session_demo_world, session_demo_cache

    build_or_get_session_demo_world(tmp_path_factory)
    out_dir = tmp_path_factory.mktemp("demo_slurm")
    env = dict(cluster.env, DASSLITE_DEMO_DIR=str(session_demo_cache(tmp_path_factory)), SWEEP_POLL="1")
    env.pop("DATA", None)
    env.pop("GPUS", None)
    tables = []
    for name, extra in (("local", []), ("slurm", ["--launcher", "slurm", "--wait"])):
        argv = ["base2new", "--trainer", "CoOp", "--dataset", "demo", "--shots", "4", "--seeds", "1",
                "--output", str(out_dir / name), *extra, "--", "OPTIM.MAX_EPOCH", "2"]
        assert S.main(argv, environ=env) == 0
        tables.append(table_of(capsys.readouterr().out).replace(str(out_dir / name), "<out>"))
    assert tables[0] == tables[1] and "| demo" in tables[0]


def test_setup_py_defers_to_pyproject():
    """`python setup.py develop` (what Dassl users type) needs a setup.py that reads pyproject.toml's metadata."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "setup.py", "--name", "--version"], cwd=repo, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["dasslite-moe-prompt", "0.1.0"]
