"""dasslite.sweep: job planning, skip / resume / failure handling, a fake train.py end to end, the bash wrappers."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from dasslite import sweep as S

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A stand-in for train.py with the same flags: writes log.txt (Dassl's lines) and results.json like the real one.
# Accuracy: base = 80 + seed, new = 60 + seed; all classes: training 40 + shots + seed, evaluation
# 20 + len(<dataset config name>) + seed. Phases: train_base / test_new (base2new), train / eval (all classes).
# FAKE_FAIL="<phase>:<seed>" makes that run crash after logging started; FAKE_CALLS names a file that gets one line
# per call. results.json's "dataset" is the DATASET.NAME of the dataset yaml, as in train.py.
FAKE_TRAIN_PY = r'''
import argparse, json, os, re, sys
p = argparse.ArgumentParser()
for flag in ("--root", "--output-dir", "--trainer", "--config-file", "--dataset-config-file", "--model-dir"):
    p.add_argument(flag, default="")
p.add_argument("--seed", type=int, default=-1)
p.add_argument("--load-epoch", type=int)
p.add_argument("--eval-only", action="store_true")
p.add_argument("--untrained", action="store_true")
p.add_argument("opts", nargs=argparse.REMAINDER)
a = p.parse_args()
opts = dict(zip(a.opts[::2], a.opts[1::2]))
sub = opts["DATASET.SUBSAMPLE_CLASSES"]
phase = {"new": "test_new", "base": "train_base"}.get(sub, "eval" if a.eval_only else "train")
ds_stem = os.path.basename(a.dataset_config_file)[:-len(".yaml")]
ds_name = re.search(r'NAME: "([^"]+)"', open(a.dataset_config_file).read())
out = a.output_dir
os.makedirs(out, exist_ok=True)
if os.environ.get("FAKE_CALLS"):
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(f"{phase} {a.seed} {out}\n")
resumed = os.path.exists(os.path.join(out, "prompt_learner", "checkpoint"))
log = open(os.path.join(out, "log.txt"), "w")
log.write(f"eval_only: {a.eval_only}\nseed: {a.seed}\n")
if a.eval_only and a.model_dir:
    if not os.path.exists(os.path.join(a.model_dir, "prompt_learner", "checkpoint")):
        print(f"no checkpoint in {a.model_dir}", file=sys.stderr)
        sys.exit(4)
if not a.eval_only:
    os.makedirs(os.path.join(out, "prompt_learner"), exist_ok=True)
    open(os.path.join(out, "prompt_learner", "checkpoint"), "w").write("model.pth.tar-1\n")
    log.write("epoch [1/1] batch [1/1]\n")
    log.flush()
    if os.environ.get("FAKE_FAIL") == f"{phase}:{a.seed}":
        print("RuntimeError: boom", file=sys.stderr)
        sys.exit(3)
    log.write("Finish training\n")
elif os.environ.get("FAKE_FAIL") == f"{phase}:{a.seed}":
    sys.exit(5)
if os.environ.get("FAKE_NO_RESULTS") == f"{phase}:{a.seed}":
    sys.exit(0)
if sub == "all":
    acc = (20.0 + len(ds_stem) if a.eval_only else 40.0 + int(opts["DATASET.NUM_SHOTS"])) + a.seed
else:
    acc = (80.0 if sub == "base" else 60.0) + a.seed
log.write(f"=> result\n* total: 100\n* correct: {int(acc)}\n* accuracy: {acc:.1f}%\n")
log.close()
record = {"complete": True, "split": "test", "accuracy": acc, "error_rate": 100 - acc, "macro_f1": acc,
          "trainer": a.trainer, "subsample_classes": sub, "num_shots": int(opts["DATASET.NUM_SHOTS"]),
          "seed": a.seed, "eval_only": a.eval_only, "resumed": resumed, "opts": opts,
          "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "load_epoch": a.load_epoch, "model_dir": a.model_dir,
          "config_file": a.config_file, **({"dataset": ds_name.group(1)} if ds_name else {})}
tmp = os.path.join(out, ".results.tmp")
json.dump(record, open(tmp, "w"))
os.replace(tmp, os.path.join(out, "results.json"))
'''


# dataset config name -> DATASET.NAME for the fake repository's configs/datasets/ (eurosat and demo have none)
FAKE_DATASET_NAMES = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
                      "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
                      "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures",
                      "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
                      "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR"}


@pytest.fixture
def fake_repo(tmp_path):
    """A repository root with the config files the sweep looks up, a fake train.py and a data root."""
    repo = tmp_path / "repo"
    rels = ["configs/datasets/eurosat.yaml", "configs/datasets/demo.yaml", "configs/trainers/CoOp/demo.yaml",
            "configs/trainers/CoOp/vit_b16_ctxv1.yaml", "configs/trainers/ZeroshotCLIP/vit_b16.yaml",
            "configs/trainers/ZeroshotCLIP/demo.yaml", "configs/trainers/MoCoOp/demo.yaml"]
    rels += [f"configs/trainers/{t}/{c}.yaml" for t in ("LASP", "MoCoOp")
             for c in set(S.RECIPES[t].values()) | {S.DEFAULT_CFGS[t]}]
    for rel in rels:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("{}\n")
    for ds, name in FAKE_DATASET_NAMES.items():
        (repo / "configs" / "datasets" / f"{ds}.yaml").write_text(f'DATASET:\n  NAME: "{name}"\n')
    (repo / "train.py").write_text(FAKE_TRAIN_PY)
    (tmp_path / "data").mkdir()
    return SimpleNamespace(repo=repo, data=tmp_path / "data", out=tmp_path / "output", calls=tmp_path / "calls.txt",
                           tmp=tmp_path)


def fake_demo_world(tmp_path):
    world = SimpleNamespace(root=str(tmp_path / "demo_root"), clip_checkpoint=str(tmp_path / "tiny_clip.pt"))
    return lambda: world


def spec_for(fake, argv, environ=None, demo_world=None):
    args = S.parse_args(["base2new", "--repo-root", str(fake.repo), "--output", str(fake.out), *argv])
    return S.resolve_spec(args, environ=environ if environ is not None else {}, demo_world=demo_world,
                              cwd=str(fake.tmp))


def calls(fake):
    return fake.calls.read_text().splitlines() if fake.calls.exists() else []


# ------------------------------------------------------------------------------------------------------------
# planning
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def fake(fake_repo):
    return fake_repo


def test_plan_dirs_opts_and_dependencies(fake):
    spec = spec_for(fake, ["--dataset", "eurosat", "--shots", "16", "--seeds", "1", "2", "--data", str(fake.data),
                           "--load-epoch", "50", "--", "OPTIM.MAX_EPOCH", "5"])
    assert spec.cfg == "vit_b16_ctxv1" and spec.trainer == "CoOp" and not spec.zero_shot
    jobs = S.plan_base2new(spec)
    assert [j.key for j in jobs] == ["train_base/seed1", "test_new/seed1", "train_base/seed2", "test_new/seed2"]
    train, test = jobs[0], jobs[1]
    base_dir = os.path.join(str(fake.out), "base2new", "train_base", "eurosat", "shots_16", "CoOp", "vit_b16_ctxv1",
                            "seed1")
    assert train.output_dir == base_dir
    assert test.output_dir == base_dir.replace("train_base", "test_new")
    assert train.argv[:2] == [sys.executable, str(fake.repo / "train.py")]
    a = train.argv
    assert a[a.index("--root") + 1] == str(fake.data) and a[a.index("--seed") + 1] == "1"
    assert a[a.index("--config-file") + 1] == os.path.join("repo", "configs", "trainers", "CoOp",
                                                           "vit_b16_ctxv1.yaml")  # relative to the cwd
    assert "--eval-only" not in a and "--model-dir" not in a
    assert a[-6:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "5"]
    b = test.argv
    assert "--eval-only" in b and b[b.index("--model-dir") + 1] == base_dir and b[b.index("--load-epoch") + 1] == "50"
    assert b[-6:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", "OPTIM.MAX_EPOCH", "5"]
    assert test.depends_on == ["train_base/seed1"] and train.depends_on == []
    assert test.expect == {"trainer": "CoOp", "seed": 1, "num_shots": 16, "subsample_classes": "new",
                           "eval_only": True, "load_epoch": 50}
    assert train.expect["eval_only"] is False and "dataset" not in train.expect  # eurosat.yaml here has no NAME
    assert "load_epoch" not in train.expect  # a training loads no checkpoint epoch
    assert train.config_file == test.config_file == spec.config_file


def test_plan_zero_shot_is_eval_only_on_base_and_new(fake):
    spec = spec_for(fake, ["--trainer", "ZeroshotCLIP", "--dataset", "eurosat", "--seeds", "1,2"],
                    environ={"DATA": str(fake.data)})
    assert spec.zero_shot and spec.cfg == "vit_b16" and spec.seeds == [1, 2] and spec.shots == [16]
    jobs = S.plan_base2new(spec)
    for job in jobs:
        assert "--eval-only" in job.argv and "--model-dir" not in job.argv and job.depends_on == []
    assert "/train_base/eurosat/shots_16/ZeroshotCLIP/vit_b16/seed1" in jobs[0].output_dir.replace(os.sep, "/")
    assert jobs[0].argv[-1] == "base" and jobs[1].argv[-1] == "new"
    # ZeroshotCLIP2 borrows ZeroshotCLIP's recipes
    spec = spec_for(fake, ["--trainer", "ZeroshotCLIP2", "--dataset", "eurosat", "--data", str(fake.data)])
    assert spec.zero_shot and spec.config_file.endswith(os.path.join("ZeroshotCLIP", "vit_b16.yaml"))


def test_plan_demo_uses_the_demo_world(fake):
    spec = spec_for(fake, ["--dataset", "demo", "--shots", "4", "--seeds", "1"], demo_world=fake_demo_world(fake.tmp))
    assert spec.cfg == "demo" and spec.data_root == str(fake.tmp / "demo_root")
    train = S.plan_base2new(spec)[0]
    assert train.argv[-2:] == ["MODEL.BACKBONE.NAME", str(fake.tmp / "tiny_clip.pt")]
    assert train.argv[train.argv.index("--dataset-config-file") + 1].endswith(os.path.join("datasets", "demo.yaml"))
    assert "/shots_4/CoOp/demo/seed1" in train.output_dir.replace(os.sep, "/")


def test_resolve_errors(fake):
    with pytest.raises(S.SweepUsageError, match="set DATA"):
        spec_for(fake, ["--dataset", "eurosat"])
    with pytest.raises(S.SweepUsageError, match="does not exist"):
        spec_for(fake, ["--dataset", "eurosat"], environ={"DATA": str(fake.tmp / "nope")})
    with pytest.raises(S.SweepUsageError, match="Did you mean: eurosat"):
        spec_for(fake, ["--dataset", "eurosatt", "--data", str(fake.data)])
    with pytest.raises(S.SweepUsageError, match="Did you mean: vit_b16_ctxv1"):
        spec_for(fake, ["--dataset", "eurosat", "--cfg", "vit_b16_ctxv2", "--data", str(fake.data)])
    # a trainer of one's own with a configs/trainers/<T>/ folder but no default recipe needs --cfg
    (fake.repo / "configs" / "trainers" / "MyMethod").mkdir()
    (fake.repo / "configs" / "trainers" / "MyMethod" / "mine.yaml").write_text("{}\n")
    with pytest.raises(S.SweepUsageError, match="--cfg is required"):
        spec_for(fake, ["--trainer", "MyMethod", "--dataset", "eurosat", "--data", str(fake.data)])
    assert spec_for(fake, ["--trainer", "MyMethod", "--cfg", "mine", "--dataset", "eurosat", "--data",
                           str(fake.data)]).cfg == "mine"
    with pytest.raises(S.SweepUsageError, match="KEY VALUE pairs"):
        spec_for(fake, ["--dataset", "eurosat", "--data", str(fake.data), "--", "OPTIM.MAX_EPOCH"])
    with pytest.raises(S.SweepUsageError, match="not a seed"):
        S.parse_args(["base2new", "--dataset", "eurosat", "--seeds", "one"])


def write_record(path, **fields):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({"complete": True, "accuracy": 50.0, **fields}, f)


def test_job_state_done_resume_new_and_conflict(fake):
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data)])
    train, test = S.plan_base2new(spec)
    assert train.state() == "new"
    os.makedirs(os.path.join(train.output_dir, "prompt_learner"))
    assert train.state() == "resume"
    with open(train.results_path, "w") as f:
        json.dump({"complete": False}, f)
    assert train.state() == "resume"  # an incomplete record is never reused
    write_record(train.output_dir, trainer="CoOp", seed=1, subsample_classes="base", num_shots=16)
    assert train.state() == "done"
    write_record(test.output_dir, trainer="CoOp", seed=1, subsample_classes="base", num_shots=16)
    with pytest.raises(S.SweepError, match="belongs to another run: subsample_classes='base'"):
        test.state()


def test_sequential_runner_skips_complete_resumes_incomplete_in_order(fake):
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "2", "--data", str(fake.data)])
    jobs = S.plan_base2new(spec)
    write_record(jobs[0].output_dir, trainer="CoOp", seed=1, subsample_classes="base", num_shots=16)
    os.makedirs(os.path.join(jobs[2].output_dir, "prompt_learner"))  # seed2 training: started before, unfinished
    launched = []

    def launcher(job, env):
        launched.append((job.key, os.path.isdir(job.output_dir)))
        write_record(job.output_dir, **job.expect)
        return 0

    out = io.StringIO()
    outcome = S.SequentialRunner(launcher, env={}, out=out).run(jobs)
    assert launched == [("test_new/seed1", False), ("train_base/seed2", True), ("test_new/seed2", False)]
    assert outcome == {"train_base/seed1": "skipped", "test_new/seed1": "ran", "train_base/seed2": "ran",
                       "test_new/seed2": "ran"}
    text = out.getvalue()
    assert f"Results exist in {jobs[0].output_dir} (complete); skipping" in text
    assert f"Incomplete run in {jobs[2].output_dir}" in text and "resumes from the last checkpoint" in text


def test_sequential_runner_stops_on_failure_naming_dir_and_log(fake):
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data)])
    jobs = S.plan_base2new(spec)
    launched = []

    def launcher(job, env):
        launched.append(job.key)
        os.makedirs(job.output_dir, exist_ok=True)
        open(job.log_path, "w").write("epoch [1/5]\n")
        return 1

    with pytest.raises(S.SweepError) as err:
        S.SequentialRunner(launcher, env={}, out=io.StringIO()).run(jobs)
    msg = str(err.value)
    assert launched == ["train_base/seed1"]  # the evaluation never starts
    assert "exit status 1" in msg and jobs[0].output_dir in msg and jobs[0].log_path in msg
    # exit 0 without a complete results.json is a failure too
    with pytest.raises(S.SweepError, match="exited 0 but left no complete results.json"):
        S.SequentialRunner(lambda job, env: 0, env={}, out=io.StringIO()).run(jobs)


def test_dry_run_prints_the_plan_and_runs_nothing(fake, capsys):
    write_record(os.path.join(str(fake.out), "base2new", "train_base", "eurosat", "shots_16", "CoOp",
                              "vit_b16_ctxv1", "seed1"), trainer="CoOp", seed=1, subsample_classes="base")
    rc = S.main(["base2new", "--repo-root", str(fake.repo), "--dataset", "eurosat", "--seeds", "1", "2",
                 "--output", str(fake.out), "--dry-run"], environ={"DATA": str(fake.data)})
    out = capsys.readouterr().out
    assert rc == 0
    assert "[train_base/seed1] skip (complete)" in out and "[test_new/seed1] run after train_base/seed1" in out
    assert "[train_base/seed2] run" in out and "--eval-only" in out and "DATASET.SUBSAMPLE_CLASSES new" in out
    assert not os.path.exists(os.path.join(str(fake.out), "base2new", "test_new"))


# ------------------------------------------------------------------------------------------------------------
# end to end with a fake train.py (real subprocesses)
# ------------------------------------------------------------------------------------------------------------
def run_sweep(fake, extra=(), env_extra=None, runner=None):
    env = {**os.environ, "FAKE_CALLS": str(fake.calls), **(env_extra or {})}
    env.pop("GPUS", None)
    argv = ["base2new", "--repo-root", str(fake.repo), "--dataset", "eurosat", "--shots", "8", "--seeds", "1", "2",
            "--data", str(fake.data), "--output", str(fake.out), *extra]
    return S.main(argv, environ=env, runner=runner)  # the runner passes `environ` on to train.py


def test_end_to_end_subprocess_skip_on_rerun_and_failure(fake, capsys):
    # seed 2's training crashes: the sweep stops, names the run folder and its log, exits non-zero
    assert run_sweep(fake, env_extra={"FAKE_FAIL": "train_base:2"}) == 1
    err = capsys.readouterr().err
    seed2 = os.path.join(str(fake.out), "base2new", "train_base", "eurosat", "shots_8", "CoOp", "vit_b16_ctxv1",
                         "seed2")
    assert "train_base/seed2: train.py failed with exit status 3" in err
    assert f"run folder: {seed2}" in err and f"log file:   {os.path.join(seed2, 'log.txt')}" in err
    assert [c.split()[:2] for c in calls(fake)] == [["train_base", "1"], ["test_new", "1"], ["train_base", "2"]]

    # the same command again: seed 1 is skipped, seed 2 resumes in its folder, then its evaluation runs
    assert run_sweep(fake) == 0
    out = capsys.readouterr().out
    assert [c.split()[:2] for c in calls(fake)[3:]] == [["train_base", "2"], ["test_new", "2"]]
    assert out.count("(complete); skipping") == 2 and f"Incomplete run in {seed2}" in out
    rec = json.load(open(os.path.join(seed2, "results.json")))
    assert rec["resumed"] is True and rec["num_shots"] == 8
    new2 = json.load(open(os.path.join(seed2.replace("train_base", "test_new"), "results.json")))
    assert new2["eval_only"] is True and new2["model_dir"] == seed2 and new2["load_epoch"] is None
    # the table: base 81/82, new 61/62 -> H = 2*81.5*61.5/143 = 70.10, per-seed H 69.56 / 70.63
    assert "| eurosat   | 81.50 ± 0.50 | 61.50 ± 0.50 | 70.10 ± 0.51 | 2 " in out

    # a third time: nothing runs
    assert run_sweep(fake) == 0
    assert len(calls(fake)) == 5 and capsys.readouterr().out.count("(complete); skipping") == 4


def test_end_to_end_exit_zero_without_results_and_eval_failure(fake, capsys):
    assert run_sweep(fake, env_extra={"FAKE_NO_RESULTS": "train_base:1"}) == 1
    assert "exited 0 but left no complete results.json" in capsys.readouterr().err
    assert run_sweep(fake, env_extra={"FAKE_FAIL": "test_new:1"}) == 1
    err = capsys.readouterr().err
    assert "test_new/seed1: train.py failed with exit status 5" in err and "test_new" in err


def test_gpu_pool_one_job_per_gpu_with_dependencies(fake, capsys):
    env = {**os.environ, "FAKE_CALLS": str(fake.calls)}
    pool = S.GpuPoolRunner(["7", "9"], env=env, poll_interval=0.02)
    assert run_sweep(fake, extra=["--seeds", "1", "2", "3"], runner=pool) == 0
    out = capsys.readouterr().out
    root = os.path.join(str(fake.out), "base2new")
    gpus = set()
    for phase in ("train_base", "test_new"):
        for seed in (1, 2, 3):
            d = os.path.join(root, phase, "eurosat", "shots_8", "CoOp", "vit_b16_ctxv1", f"seed{seed}")
            gpus.add(json.load(open(os.path.join(d, "results.json")))["gpu"])
            assert os.path.isfile(os.path.join(d, "console.txt"))
    assert gpus <= {"7", "9"}
    order = [c.split()[:2] for c in calls(fake)]
    for seed in ("1", "2", "3"):  # every evaluation after its training (it would exit 4 otherwise)
        assert order.index(["train_base", seed]) < order.index(["test_new", seed])
    assert "| eurosat" in out and "| 3 " in out
    # a failure in the pool: reported with the console tail, later jobs not started
    shutil.rmtree(os.path.join(root, "test_new"))
    for seed in (1, 2, 3):
        shutil.rmtree(os.path.join(root, "train_base", "eurosat", "shots_8", "CoOp", "vit_b16_ctxv1", f"seed{seed}"))
    pool = S.GpuPoolRunner(["0"], env={**env, "FAKE_FAIL": "train_base:1"}, poll_interval=0.02)
    assert run_sweep(fake, extra=["--seeds", "1", "2"], runner=pool) == 1
    err = capsys.readouterr().err
    assert "train_base/seed1: train.py failed with exit status 3" in err and "RuntimeError: boom" in err
    assert "Not started: test_new/seed1, train_base/seed2, test_new/seed2" in err


def test_make_runner_and_gpus():
    assert S.parse_gpus("0, 1,2") == ["0", "1", "2"] and S.parse_gpus("") == [] and S.parse_gpus(None) == []
    assert isinstance(S.make_runner(["0", "1"], env={}), S.GpuPoolRunner)
    single = S.make_runner(["3"], env={})
    assert isinstance(single, S.SequentialRunner) and single.env["CUDA_VISIBLE_DEVICES"] == "3"
    assert "CUDA_VISIBLE_DEVICES" not in S.make_runner([], env={}).env


# ------------------------------------------------------------------------------------------------------------
# the bash wrappers
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_wrappers_run_from_anywhere(fake):
    env = {**os.environ, "PYTHON": sys.executable, "OUTPUT": str(fake.out), "DATA": str(fake.data),
           "FAKE_CALLS": str(fake.calls)}
    env.pop("GPUS", None)
    env.pop("CFG", None)
    common = ["--repo-root", str(fake.repo)]
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "coop", "base2new.sh"), "eurosat", "4", "1 2",
                           *common], cwd=str(fake.tmp), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| eurosat" in proc.stdout and "81.50 ± 0.50" in proc.stdout
    assert os.path.isdir(os.path.join(str(fake.out), "base2new", "test_new", "eurosat", "shots_4", "CoOp",
                                      "vit_b16_ctxv1", "seed2"))
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "zsclip", "base2new.sh"), "eurosat", *common,
                           "--dry-run"], cwd=str(fake.tmp), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ZeroshotCLIP / vit_b16 on eurosat, 16 shots, seeds 1 2 3" in proc.stdout
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "coop", "base2new.sh"), "eurosat"],
                          cwd=str(fake.tmp), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "Usage" in proc.stderr
    for script in ("coop", "zsclip"):
        text = open(os.path.join(REPO, "scripts", script, "base2new.sh")).read()
        assert "set -euo pipefail" in open(os.path.join(REPO, "scripts", "common.sh")).read()
        assert "rm -r" not in text


# ------------------------------------------------------------------------------------------------------------
# what a finished run must match: checkpoint epoch, recipe file
# ------------------------------------------------------------------------------------------------------------
def test_load_epoch_of_a_finished_evaluation_must_match_when_given(fake):
    fields = dict(trainer="CoOp", seed=1, num_shots=16, subsample_classes="new", eval_only=True)
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data), "--load-epoch", "10"])
    train, test = S.plan_base2new(spec)
    write_record(test.output_dir, load_epoch=5, model_dir=train.output_dir, **fields)
    with pytest.raises(S.SweepError, match="load_epoch=5 \\(expected 10\\)") as err:
        test.state()
    assert "another checkpoint epoch" in str(err.value) and "its own --output" in str(err.value)
    write_record(test.output_dir, load_epoch=None, model_dir=train.output_dir, **fields)  # the latest: not epoch 10
    with pytest.raises(S.SweepError, match="load_epoch=None"):
        test.state()
    write_record(test.output_dir, load_epoch=10, model_dir=train.output_dir, **fields)
    assert test.state() == "done"
    # without --load-epoch the latest checkpoint is evaluated: any recorded epoch is accepted
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data)])
    _, latest = S.plan_base2new(spec)
    assert "load_epoch" not in latest.expect
    write_record(test.output_dir, load_epoch=5, model_dir=train.output_dir, **fields)
    assert latest.state() == "done"


def test_load_epoch_end_to_end_rerun_with_another_epoch_stops(fake, capsys):
    assert run_sweep(fake, extra=["--seeds", "1", "--load-epoch", "1"]) == 0
    capsys.readouterr()
    assert run_sweep(fake, extra=["--seeds", "1", "--load-epoch", "3"]) == 1  # never reuses the epoch-1 evaluation
    err = capsys.readouterr().err
    assert "load_epoch=1 (expected 3)" in err and "its own --output" in err
    assert len(calls(fake)) == 2  # nothing ran the second time


def test_config_file_names_the_folder_and_must_match(fake, capsys):
    ep50, ep300 = S.RECIPES["LASP"]["caltech101"], S.RECIPES["LASP"]["eurosat"]
    ep50_file = str(fake.repo / "configs" / "trainers" / "LASP" / f"{ep50}.yaml")
    common = ["--trainer", "LASP", "--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data)]
    spec = spec_for(fake, common + ["--config-file", ep50_file])
    assert spec.cfg == ep50 and spec.config_file.endswith(f"{ep50}.yaml")  # not eurosat's default (ep300)
    assert f"/LASP/{ep50}/seed1" in S.plan_base2new(spec)[0].output_dir.replace(os.sep, "/")
    # --cfg still names the folder when given; a record made with another recipe file is a conflict
    spec = spec_for(fake, common + ["--cfg", ep300, "--config-file", ep50_file])
    train = S.plan_base2new(spec)[0]
    assert spec.cfg == ep300 and train.config_file.endswith(f"{ep50}.yaml")
    fields = dict(trainer="LASP", seed=1, num_shots=16, subsample_classes="base", eval_only=False, model_dir="")
    write_record(train.output_dir, config_file=f"configs/trainers/LASP/{ep300}.yaml", **fields)
    with pytest.raises(S.SweepError, match=f"config_file='configs/trainers/LASP/{ep300}.yaml'") as err:
        train.state()
    assert "another recipe file" in str(err.value)
    # the same recipe file, recorded relative to another folder, is the same run
    default_train = S.plan_base2new(spec_for(fake, common))[0]
    assert default_train.output_dir == train.output_dir
    write_record(train.output_dir, config_file=f"../elsewhere/configs/trainers/LASP/{ep300}.yaml", **fields)
    assert default_train.state() == "done"

    # end to end: the default recipe's finished runs are not reused for another recipe file
    base = ["--trainer", "LASP", "--seeds", "1"]
    assert run_sweep(fake, extra=base) == 0
    assert run_sweep(fake, extra=base + ["--config-file", ep50_file]) == 0
    out = capsys.readouterr().out
    assert len(calls(fake)) == 4 and "(complete); skipping" not in out
    root = os.path.join(str(fake.out), "base2new", "test_new", "eurosat", "shots_8", "LASP")
    assert sorted(os.listdir(root)) == sorted([ep50, ep300])
    rec = json.load(open(os.path.join(root, ep50, "seed1", "results.json")))
    assert rec["config_file"].endswith(f"{ep50}.yaml")
    # the default recipe's folder with the ep50 file: refused, nothing runs
    assert run_sweep(fake, extra=base + ["--cfg", ep300, "--config-file", ep50_file]) == 1
    assert "another recipe file" in capsys.readouterr().err and len(calls(fake)) == 4


# ------------------------------------------------------------------------------------------------------------
# --zero-shot on a trainer that trains
# ------------------------------------------------------------------------------------------------------------
def test_zero_shot_of_a_trained_trainer_gets_its_own_folders(fake, capsys):
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "--data", str(fake.data), "--zero-shot"])
    assert spec.zero_shot and spec.cfg == "vit_b16_ctxv1_zeroshot"
    assert spec.config_file.endswith(os.path.join("CoOp", "vit_b16_ctxv1.yaml"))  # the recipe itself is unchanged
    for job in S.plan_base2new(spec):
        assert job.eval_only and "/CoOp/vit_b16_ctxv1_zeroshot/seed1" in job.output_dir.replace(os.sep, "/")
    # zero-shot trainers keep their plain folder
    assert spec_for(fake, ["--trainer", "ZeroshotCLIP", "--zero-shot", "--dataset", "eurosat", "--data",
                           str(fake.data)]).cfg == "vit_b16"
    # end to end: trained runs, then zero-shot ones beside them; neither is mixed into the other's table
    assert run_sweep(fake, extra=["--seeds", "1"]) == 0
    capsys.readouterr()
    assert run_sweep(fake, extra=["--seeds", "1", "--zero-shot"]) == 0
    out = capsys.readouterr().out
    assert len(calls(fake)) == 4 and "(complete); skipping" not in out
    assert "CoOp / vit_b16_ctxv1_zeroshot / shots 8" in out
    assert run_sweep(fake, extra=["--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("(complete); skipping") == 2 and "CoOp / vit_b16_ctxv1 / shots 8" in out
    assert "zeroshot" not in out.split("Base-to-new")[1]


# ------------------------------------------------------------------------------------------------------------
# GPU ids, the pool's clean-up, dataset yaml errors, trainer names
# ------------------------------------------------------------------------------------------------------------
def test_repeated_gpu_ids_are_refused(fake, capsys):
    with pytest.raises(S.SweepUsageError, match="GPU id 0 given more than once"):
        S.parse_gpus("0,0")
    with pytest.raises(S.SweepUsageError, match="GPU id 1 given more than once"):
        S.parse_gpus("1, 2 1")
    with pytest.raises(S.SweepUsageError, match="more than once"):
        S.GpuPoolRunner(["3", "3"], env={})
    argv = ["base2new", "--repo-root", str(fake.repo), "--dataset", "eurosat", "--seeds", "1", "--data",
            str(fake.data), "--output", str(fake.out)]
    assert S.main(argv, environ={**os.environ, "FAKE_CALLS": str(fake.calls), "GPUS": "0,0"}) == 2
    assert "GPU id 0 given more than once" in capsys.readouterr().err and calls(fake) == []
    assert run_sweep(fake, extra=["--gpus", "4,5,4"]) == 2
    assert "GPU id 4 given more than once" in capsys.readouterr().err and calls(fake) == []


class FakeProc:
    def __init__(self):
        self.terminated = False

    def poll(self):
        return -15 if self.terminated else None

    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return self.poll()


def test_gpu_pool_terminates_running_jobs_on_any_error(fake):
    spec = spec_for(fake, ["--dataset", "eurosat", "--seeds", "1", "2", "--data", str(fake.data)])
    jobs = S.plan_base2new(spec)
    started = []

    def popen(job, env, console):
        if started:  # the second start fails (e.g. no such interpreter)
            raise OSError(2, "No such file or directory", "python")
        started.append(FakeProc())
        return started[-1]

    out = io.StringIO()
    with pytest.raises(OSError, match="No such file"):
        S.GpuPoolRunner(["0", "1"], popen=popen, env={}, out=out, poll_interval=0.01).run(jobs)
    assert len(started) == 1 and started[0].terminated  # not left running unattended
    assert "[gpu 0] stopping train_base/seed1" in out.getvalue()


def test_malformed_dataset_yaml_is_reported_with_its_file(fake, capsys):
    bad = fake.repo / "configs" / "datasets" / "dtd.yaml"
    bad.write_text('DATASET:\n  NAME: "DescribableTextures\n  ROOT: [\n')
    with pytest.raises(S.SweepUsageError, match=f"cannot parse dataset config {bad}"):
        S.read_dataset_name(str(bad))
    rc = S.main(["xd", "--repo-root", str(fake.repo), "--trainer", "MoCoOp", "--targets", "dtd", "--data",
                 str(fake.data), "--output", str(fake.out), "--dry-run"], environ={})
    assert rc == 2 and f"cannot parse dataset config {bad}" in capsys.readouterr().err
    bad.write_text("- just\n- a list\n")
    with pytest.raises(S.SweepUsageError, match="is not a YAML mapping"):
        S.read_dataset_name(str(bad))
    bad.write_text("")
    assert S.read_dataset_name(str(bad)) is None  # empty: no NAME, nothing to parse wrongly


def test_unknown_trainer_names_the_close_ones(fake, capsys):
    with pytest.raises(S.SweepUsageError, match="unknown trainer 'mocoop'. Did you mean: MoCoOp\\?"):
        spec_for(fake, ["--trainer", "mocoop", "--dataset", "eurosat", "--data", str(fake.data)])
    with pytest.raises(S.SweepUsageError, match="Did you mean: LASP"):
        spec_for(fake, ["--trainer", "LAPS", "--dataset", "eurosat", "--data", str(fake.data)])
    with pytest.raises(S.SweepUsageError, match="unknown trainer 'MyMethod'. Known trainers: CoCoOp, CoOp"):
        spec_for(fake, ["--trainer", "MyMethod", "--dataset", "eurosat", "--data", str(fake.data)])
    # a trainer of one's own with an explicit recipe file is fine, a near miss of a known one still is not
    recipe = fake.tmp / "my_recipe.yaml"
    recipe.write_text("{}\n")
    spec = spec_for(fake, ["--trainer", "MyMethod", "--config-file", str(recipe), "--dataset", "eurosat", "--data",
                           str(fake.data)])
    assert spec.cfg == "my_recipe"
    with pytest.raises(S.SweepUsageError, match="Did you mean: CoOp"):
        spec_for(fake, ["--trainer", "coop", "--config-file", str(recipe), "--dataset", "eurosat", "--data",
                        str(fake.data)])
    assert S.main(["base2new", "--repo-root", str(fake.repo), "--trainer", "mocoop", "--dataset", "demo",
                   "--dry-run"], environ={}) == 2
    assert "Did you mean: MoCoOp?" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# common.sh: relative DATA / OUTPUT, bash 3.2
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_relative_data_and_output_are_the_callers(fake):
    caller = fake.tmp / "work"
    (caller / "mydata").mkdir(parents=True)
    env = {**os.environ, "PYTHON": sys.executable, "OUTPUT": "rel_out", "DATA": "mydata"}
    for key in ("GPUS", "CFG", "LOADEP"):
        env.pop(key, None)
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "coop", "base2new.sh"), "eurosat", "4", "1",
                           "--repo-root", str(fake.repo), "--dry-run"], cwd=str(caller), env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out_root = os.path.join(str(caller), "rel_out")
    assert f"data: {caller / 'mydata'}; output: {os.path.join(out_root, 'base2new')}" in proc.stdout
    assert f"--output-dir {os.path.join(out_root, 'base2new', 'train_base')}" in proc.stdout
    assert f"--root {caller / 'mydata'}" in proc.stdout and REPO not in proc.stdout.split("--root")[1].split()[0]
    # absolute ones are kept as they are
    env.update(OUTPUT=str(fake.out), DATA=str(fake.data))
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "coop", "base2new.sh"), "eurosat", "4", "1",
                           "--repo-root", str(fake.repo), "--dry-run"], cwd=str(caller), env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"data: {fake.data}; output: {os.path.join(str(fake.out), 'base2new')}" in proc.stdout


def test_common_sh_has_no_empty_array_expansion_bash32_rejects():
    # bash < 4.4 (macOS's 3.2) treats "${a[@]}" of an empty array as unbound under `set -u`; xd/dg pass no flags
    text = open(os.path.join(REPO, "scripts", "common.sh")).read()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    bare = [m.start() for m in re.finditer(r'"\$\{flags\[@\]\}"', code)
            if not code[:m.start()].endswith('${flags[@]+')]
    assert not bare, "expand the possibly empty flags array as ${flags[@]+\"${flags[@]}\"}"
