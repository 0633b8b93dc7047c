"""SIGTERM on a sweep stops and waits for its train.py children (none outlives it); one run folder, one writer."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dasslite import sweep as S
from dasslite.utils.locks import RunLockedError, acquire_run_lock, lock_holder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A train.py stand-in that records its pid in its run folder and then trains "forever".
SLOW_TRAIN_PY = textwrap.dedent('''
    import os, sys, time
    out = sys.argv[sys.argv.index("--output-dir") + 1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
''')


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(paths, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(os.path.exists(p) and open(p).read() for p in paths):
            return [int(open(p).read()) for p in paths]
        time.sleep(0.1)
    raise AssertionError(f"not started: {paths}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("gpus", ["", "0,1"], ids=["sequential", "gpu-pool"])
def test_sigterm_stops_and_waits_for_every_child(tmp_path, gpus):
    repo = tmp_path / "repo"
    for rel in ("configs/datasets/eurosat.yaml", "configs/trainers/CoOp/vit_b16_ctxv1.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("{}\n")
    (repo / "train.py").write_text(SLOW_TRAIN_PY)
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    seeds = ["1", "2"] if gpus else ["1"]
    env = dict(os.environ, PYTHONPATH=REPO, GPUS=gpus)
    sweep = subprocess.Popen([sys.executable, "-m", "dasslite.sweep", "base2new", "--repo-root", str(repo),
                              "--dataset", "eurosat", "--data", str(tmp_path / "data"), "--output", str(out),
                              "--shots", "2", "--seeds", *seeds], cwd=str(tmp_path), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dirs = [out / "base2new" / "train_base" / "eurosat" / "shots_2" / "CoOp" / "vit_b16_ctxv1" / f"seed{s}"
                for s in seeds]
    try:
        pids = wait_for([str(d / "pid") for d in run_dirs])
        sweep.send_signal(signal.SIGTERM)
        stdout, stderr = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 143, stderr
    assert "interrupted by SIGTERM" in stderr
    for seed in seeds:
        assert f"train_base/seed{seed}" in stdout + stderr  # says what was interrupted
    assert not [pid for pid in pids if alive(pid)], "a train.py outlived its sweep"


def test_second_writer_of_a_run_folder_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import sys, time
        sys.path.insert(0, {REPO!r})
        from dasslite.utils.locks import acquire_run_lock
        acquire_run_lock({str(folder)!r})
        print("locked", flush=True)
        time.sleep(60)
    ''')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"{folder} is in use by pid {holder.pid} on "):
            acquire_run_lock(str(folder))
        assert lock_holder(str(folder))["pid"] == holder.pid
        job = S.Job(key="train_base/seed1", phase="train_base", seed=1, output_dir=str(folder), argv=["x"],
                    eval_only=False)
        with pytest.raises(S.SweepError, match=rf"is being written by pid {holder.pid} .*Two sweeps must not train"):
            job.state()
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(str(folder)) is None  # released with its process, however it ended
    acquire_run_lock(str(folder))
