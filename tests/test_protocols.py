"""dasslite.sweep's fewshot / xd / dg protocols and recipe table: plans, skip / resume, GPU-pool order, the wrappers.

Uses test_sweep's fake repository and fake train.py (all-classes accuracy: training 40 + shots + seed, evaluation
20 + len(<dataset config name>) + seed).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from dasslite import results as R
from dasslite import sweep as S
from tests.test_sweep import REPO, calls, fake_demo_world, fake_repo, write_record  # noqa: F401 (fixture)

MOCOOP_IMAGENET = "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet"


@pytest.fixture
def fake(fake_repo):  # noqa: F811
    return fake_repo


def spec_for(fake, protocol, argv, environ=None, demo_world=None):
    args = S.parse_args([protocol, "--repo-root", str(fake.repo), "--output", str(fake.out), *argv])
    return S.resolve_spec(args, environ=environ if environ is not None else {"DATA": str(fake.data)},
                          demo_world=demo_world, cwd=str(fake.tmp))


def opt(argv, key):
    return argv[argv.index(key) + 1] if key in argv else None


def unix(path):
    return path.replace(os.sep, "/")


# ------------------------------------------------------------------------------------------------------------
# recipes
# ------------------------------------------------------------------------------------------------------------
def test_recipe_table():
    ep50, ep300 = ("vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32",
                   "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32")
    ep25 = "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
    for trainer in ("MoCoOp", "LASP"):
        for ds in ("caltech101", "dtd", "ucf101"):
            assert S.default_cfg(trainer, ds) == ep50
        assert S.default_cfg(trainer, "eurosat") == ep300
        for ds in ("oxford_pets", "stanford_cars", "oxford_flowers", "fgvc_aircraft", "sun397", "imagenetv2"):
            assert S.default_cfg(trainer, ds) == ep25
        assert S.default_cfg(trainer, "demo") == "demo"
    assert S.default_cfg("MoCoOp", "food101") == "vit_b16_c4_ep10_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
    assert S.default_cfg("MoCoOp", "imagenet") == MOCOOP_IMAGENET
    assert S.default_cfg("LASP", "food101") == S.default_cfg("LASP", "imagenet") == \
        "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"
    assert S.default_cfg("CoOp", "eurosat") == S.default_cfg("CoOp", "imagenet") == "vit_b16_ctxv1"
    assert S.default_cfg("NoSuchTrainer", "eurosat") is None


def test_every_recipe_exists_in_the_repository():
    for trainer, table in S.RECIPES.items():
        folder = os.path.join(REPO, "configs", "trainers", trainer)
        if not os.path.isdir(folder):
            pytest.skip(f"configs/trainers/{trainer}/ is not there yet")
        for name in set(table.values()) | {S.DEFAULT_CFGS[trainer], "demo"}:
            assert os.path.isfile(os.path.join(folder, f"{name}.yaml")), (trainer, name)


def test_cfg_overrides_the_recipe_and_demo_uses_demo(fake):
    spec = spec_for(fake, "base2new", ["--trainer", "MoCoOp", "--dataset", "caltech101"])
    assert spec.cfg == S.RECIPES["MoCoOp"]["caltech101"]
    spec = spec_for(fake, "fewshot", ["--trainer", "LASP", "--dataset", "dtd", "--cfg", "vit_b16_c4_ep10_batch1_cls_"
                                      "t2t_5_wcl_25_g1_b"])
    assert spec.cfg == "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"
    spec = spec_for(fake, "base2new", ["--trainer", "MoCoOp", "--dataset", "demo", "--shots", "4"],
                    demo_world=fake_demo_world(fake.tmp))
    assert spec.cfg == "demo" and spec.config_file.endswith(os.path.join("MoCoOp", "demo.yaml"))
    assert spec.dataset_names == {"demo": None}  # the fake demo.yaml has no NAME


# ------------------------------------------------------------------------------------------------------------
# plans
# ------------------------------------------------------------------------------------------------------------
def test_fewshot_plan(fake):
    spec = spec_for(fake, "fewshot", ["--trainer", "MoCoOp", "--dataset", "dtd", "--seeds", "1,2", "--shots",
                                      "1", "4", "--", "OPTIM.MAX_EPOCH", "2"])
    assert spec.shots == [1, 4] and spec.load_epoch is None
    jobs = S.plan(spec)
    assert [j.key for j in jobs] == ["shots_1/seed1", "shots_1/seed2", "shots_4/seed1", "shots_4/seed2"]
    cfg = S.RECIPES["MoCoOp"]["dtd"]
    for job, (k, seed) in zip(jobs, [(1, 1), (1, 2), (4, 1), (4, 2)]):
        assert unix(job.output_dir) == unix(os.path.join(str(fake.out), "fewshot", "dtd", f"shots_{k}", "MoCoOp",
                                                         cfg, f"seed{seed}"))
        assert job.argv[-6:] == ["DATASET.NUM_SHOTS", str(k), "DATASET.SUBSAMPLE_CLASSES", "all",
                                 "OPTIM.MAX_EPOCH", "2"]
        assert not job.eval_only and "--eval-only" not in job.argv and "--model-dir" not in job.argv
        assert job.depends_on == [] and "TRAINER.MOCOOP.TEMPLATE_GROUPS" not in job.argv
        assert job.expect == {"trainer": "MoCoOp", "seed": seed, "num_shots": k, "subsample_classes": "all",
                              "eval_only": False, "dataset": "DescribableTextures"}
    assert S.parse_args(["fewshot", "--dataset", "dtd"]).shots == [1, 2, 4, 8, 16]
    with pytest.raises(S.SweepUsageError, match="shot counts must be >= 1"):
        S.parse_args(["fewshot", "--dataset", "dtd", "--shots", "0", "2"])
    with pytest.raises(SystemExit):  # fewshot evaluates nothing after training: no --load-epoch
        S.parse_args(["fewshot", "--dataset", "dtd", "--load-epoch", "5"])


def test_xd_plan_mocoop_source_bound_opts_only_on_evals(fake):
    spec = spec_for(fake, "xd", ["--trainer", "MoCoOp", "--seeds", "1", "2", "--load-epoch", "10"])
    assert spec.dataset == "imagenet" and spec.cfg == MOCOOP_IMAGENET and spec.shots == [16]
    others = [d for d in S.XD_DATASETS if d != "imagenet"]
    assert spec.targets == others and len(others) == 10
    jobs = S.plan(spec)
    assert len(jobs) == 2 * 11
    train, evals = jobs[0], jobs[1:11]
    train_dir = os.path.join(str(fake.out), "transfer", "train", "imagenet", "shots_16", "MoCoOp", MOCOOP_IMAGENET,
                             "seed1")
    assert train.key == "train/seed1" and train.output_dir == train_dir and not train.eval_only
    assert train.argv[-4:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "all"]
    assert "TRAINER.MOCOOP.TEMPLATE_GROUPS" not in train.argv  # the source trains with its own groups
    assert unix(opt(train.argv, "--dataset-config-file")).endswith("configs/datasets/imagenet.yaml")
    assert train.expect["dataset"] == "ImageNet"
    for job, target in zip(evals, others):
        assert job.key == f"test/{target}/seed1" and job.depends_on == ["train/seed1"] and job.eval_only
        assert job.output_dir == train_dir.replace(os.path.join("transfer", "train", "imagenet"),
                                                   os.path.join("xd", "test", target))
        assert opt(job.argv, "--model-dir") == train_dir and opt(job.argv, "--load-epoch") == "10"
        assert unix(opt(job.argv, "--dataset-config-file")).endswith(f"configs/datasets/{target}.yaml")
        assert unix(opt(job.argv, "--config-file")).endswith(f"MoCoOp/{MOCOOP_IMAGENET}.yaml")
        assert opt(job.argv, "TRAINER.MOCOOP.TEMPLATE_GROUPS") == "ImageNet"
        assert job.argv.count("TRAINER.MOCOOP.TEMPLATE_GROUPS") == 1
        assert job.expect["num_shots"] == 16 and job.expect["subsample_classes"] == "all"
        assert job.expect.get("dataset") == S.read_dataset_name(str(fake.repo / "configs" / "datasets" /
                                                                    f"{target}.yaml"))
    assert jobs[11].key == "train/seed2" and jobs[12].depends_on == ["train/seed2"]
    assert S.source_bound_opts(spec, "imagenet") == [] and S.source_bound_opts(spec, "dtd") == \
        ["TRAINER.MOCOOP.TEMPLATE_GROUPS", "ImageNet"]


def test_dg_plan_coop_and_zero_shot(fake):
    spec = spec_for(fake, "dg", ["--trainer", "CoOp", "--seeds", "1"])
    assert spec.targets == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    jobs = S.plan(spec)
    assert [j.key for j in jobs] == ["train/seed1"] + [f"test/{t}/seed1" for t in spec.targets]
    assert all("TRAINER.MOCOOP.TEMPLATE_GROUPS" not in j.argv for j in jobs)  # only trainers in SOURCE_BOUND_OPTS
    assert "/dg/test/imagenet_a/shots_16/CoOp/vit_b16_ctxv1/seed1" in unix(jobs[3].output_dir)
    assert jobs[3].expect["dataset"] == "ImageNetA"
    spec = spec_for(fake, "dg", ["--trainer", "ZeroshotCLIP", "--seeds", "1", "--targets", "imagenet_r"])
    jobs = S.plan(spec)
    assert [j.key for j in jobs] == ["train/seed1", "test/imagenet_r/seed1"]
    for job in jobs:
        assert job.eval_only and "--eval-only" in job.argv and "--model-dir" not in job.argv and not job.depends_on
    assert "/transfer/train/imagenet/shots_16/ZeroshotCLIP/vit_b16/seed1" in unix(jobs[0].output_dir)


def test_transfer_usage_errors(fake):
    with pytest.raises(S.SweepUsageError, match="demo world is a single dataset"):
        spec_for(fake, "xd", ["--source", "demo"])
    with pytest.raises(S.SweepUsageError, match="demo world is a single dataset"):
        spec_for(fake, "dg", ["--targets", "imagenetv2", "demo"])
    with pytest.raises(S.SweepUsageError, match="includes the source imagenet"):
        spec_for(fake, "xd", ["--targets", "imagenet", "dtd"])
    with pytest.raises(S.SweepUsageError, match="Did you mean: imagenet_r"):
        spec_for(fake, "dg", ["--targets", "imagenet_rr"])
    # MoCoOp needs the source's DATASET.NAME for its evaluations: the fake eurosat.yaml has none
    with pytest.raises(S.SweepUsageError, match="has no DATASET.NAME"):
        spec_for(fake, "xd", ["--trainer", "MoCoOp", "--source", "eurosat", "--targets", "dtd"])
    spec_for(fake, "xd", ["--trainer", "CoOp", "--source", "eurosat", "--targets", "dtd"])  # others do not


def test_state_conflicts_on_eval_only_and_model_dir(fake):
    spec = spec_for(fake, "xd", ["--seeds", "1", "--targets", "dtd"])
    train, test = S.plan(spec)
    fields = dict(trainer="CoOp", seed=1, num_shots=16, subsample_classes="all")
    # a zero-shot evaluation left in a training folder is not reused as the training
    write_record(train.output_dir, eval_only=True, model_dir="", **fields)
    with pytest.raises(S.SweepError, match="eval_only=True"):
        train.state()
    write_record(train.output_dir, eval_only=False, model_dir="", **fields)
    assert train.state() == "done"
    # an evaluation of a model trained elsewhere is not reused either; the same layout from another cwd is
    other = test.model_dir.replace(os.path.join("train", "imagenet"), os.path.join("train", "caltech101"))
    write_record(test.output_dir, eval_only=True, model_dir=other, dataset="DescribableTextures", **fields)
    with pytest.raises(S.SweepError, match="model_dir="):
        test.state()
    relative = os.path.join("output", *S.layout_tail(test.model_dir))
    write_record(test.output_dir, eval_only=True, model_dir=relative, dataset="DescribableTextures", **fields)
    assert test.state() == "done"
    write_record(test.output_dir, eval_only=True, model_dir=relative, dataset="Food101", **fields)
    with pytest.raises(S.SweepError, match="dataset='Food101'"):
        test.state()


# ------------------------------------------------------------------------------------------------------------
# end to end with the fake train.py
# ------------------------------------------------------------------------------------------------------------
def run_main(fake, protocol, argv, env_extra=None, runner=None):
    env = {**os.environ, "FAKE_CALLS": str(fake.calls), "DATA": str(fake.data), **(env_extra or {})}
    env.pop("GPUS", None)
    return S.main([protocol, "--repo-root", str(fake.repo), "--output", str(fake.out), *argv], environ=env,
                  runner=runner)


def test_fewshot_end_to_end_skip_and_resume(fake, capsys):
    argv = ["--trainer", "CoOp", "--dataset", "dtd", "--shots", "1", "2", "--seeds", "1", "2"]
    assert run_main(fake, "fewshot", argv, {"FAKE_FAIL": "train:2"}) == 1  # shots_1/seed2 crashes
    assert "shots_1/seed2: train.py failed with exit status 3" in capsys.readouterr().err
    assert [c.split()[:2] for c in calls(fake)] == [["train", "1"], ["train", "2"]]
    assert run_main(fake, "fewshot", argv) == 0
    out = capsys.readouterr().out
    seed2 = os.path.join(str(fake.out), "fewshot", "dtd", "shots_1", "CoOp", "vit_b16_ctxv1", "seed2")
    assert out.count("(complete); skipping") == 1 and f"Incomplete run in {seed2}" in out
    assert json.load(open(os.path.join(seed2, "results.json")))["resumed"] is True
    assert len(calls(fake)) == 5  # + seed2 again, then shots_2 seeds 1 and 2
    # 40 + K + seed: 1 shot 42 / 43, 2 shots 43 / 44
    assert "| dtd       | 42.50 ± 0.50 | 43.50 ± 0.50 | 2 " in out
    assert run_main(fake, "fewshot", argv) == 0
    assert len(calls(fake)) == 5 and capsys.readouterr().out.count("(complete); skipping") == 4


def test_xd_gpu_pool_evaluations_wait_for_their_training(fake, capsys):
    env = {**os.environ, "FAKE_CALLS": str(fake.calls)}
    pool = S.GpuPoolRunner(["5", "6", "7"], env=env, poll_interval=0.02)
    argv = ["--trainer", "MoCoOp", "--seeds", "1", "2", "--targets", "caltech101", "dtd"]
    assert run_main(fake, "xd", argv, runner=pool) == 0
    out = capsys.readouterr().out
    assert len(calls(fake)) == 6
    # the pool's own log: every evaluation starts after its training finished, while the other seed's jobs overlap
    events = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[gpu ")]
    done = {}
    for seed in ("1", "2"):
        done[seed] = events.index(next(e for e in events if e.startswith(f"finished train/seed{seed} ")))
        starts = [i for i, e in enumerate(events) if e.startswith("start [test/") and f"/seed{seed}]" in e]
        assert len(starts) == 2 and min(starts) > done[seed]
    assert events.index(next(e for e in events if e.startswith("start [train/seed2]"))) < done["1"]
    root = os.path.join(str(fake.out), "xd")
    rec = json.load(open(os.path.join(root, "test", "dtd", "shots_16", "MoCoOp", MOCOOP_IMAGENET, "seed2",
                                      "results.json")))
    assert rec["opts"]["TRAINER.MOCOOP.TEMPLATE_GROUPS"] == "ImageNet" and rec["gpu"] in {"5", "6", "7"}
    assert rec["dataset"] == "DescribableTextures"
    train_rec = json.load(open(os.path.join(str(fake.out), "transfer", "train", "imagenet", "shots_16", "MoCoOp",
                                            MOCOOP_IMAGENET, "seed1", "results.json")))
    assert "TRAINER.MOCOOP.TEMPLATE_GROUPS" not in train_rec["opts"]
    # source 40 + 16 + seed = 57 / 58; caltech101 20 + 10 + seed = 31 / 32; dtd 20 + 3 + seed = 24 / 25
    line = next(l for l in out.splitlines() if l.startswith(f"| MoCoOp / {MOCOOP_IMAGENET}"))
    assert [c.strip() for c in line.strip("|").split("|")][1:] == ["57.50 ± 0.50", "31.50 ± 0.50",
                                                                 "24.50 ± 0.50", "28.00", "2"]
    assert run_main(fake, "xd", argv) == 0
    assert len(calls(fake)) == 6 and capsys.readouterr().out.count("(complete); skipping") == 6


# ------------------------------------------------------------------------------------------------------------
# the bash wrappers
# ------------------------------------------------------------------------------------------------------------
def bash(fake, script, *args, env_extra=None):
    env = {**os.environ, "PYTHON": sys.executable, "OUTPUT": str(fake.out), "DATA": str(fake.data), **(env_extra or {})}
    for key in ("GPUS", "CFG", "LOADEP"):
        env.pop(key, None)
    env.update(env_extra or {})
    return subprocess.run(["bash", os.path.join(REPO, "scripts", script), *args], cwd=str(fake.tmp), env=env,
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_wrappers_dry_run_from_another_cwd(fake):
    common = ["--repo-root", str(fake.repo), "--dry-run"]
    proc = bash(fake, "mocoop/base2new.sh", "eurosat", "8", "1", *common)
    assert proc.returncode == 0, proc.stderr
    assert f"base2new: MoCoOp / {S.RECIPES['MoCoOp']['eurosat']} on eurosat, 8 shots, seeds 1 " in proc.stdout
    proc = bash(fake, "lasp/fewshot.sh", "caltech101", "1,2", *common, "--shots", "2", "4")
    assert proc.returncode == 0, proc.stderr
    assert f"fewshot: LASP / {S.RECIPES['LASP']['caltech101']} on caltech101, shots 2 4, seeds 1 2" in proc.stdout
    assert proc.stdout.count("] run\n") == 4
    proc = bash(fake, "mocoop/dg.sh", "2", *common, env_extra={"LOADEP": "7"})
    assert proc.returncode == 0, proc.stderr
    assert f"dg: MoCoOp / {MOCOOP_IMAGENET}, source imagenet (16 shots) -> imagenetv2 imagenet_sketch imagenet_a " \
           f"imagenet_r, seeds 2" in proc.stdout
    commands = [l for l in proc.stdout.splitlines() if l.startswith("  $ ")]
    assert len(commands) == 5 and "TEMPLATE_GROUPS" not in commands[0]
    assert all("TRAINER.MOCOOP.TEMPLATE_GROUPS ImageNet" in c and "--load-epoch 7" in c for c in commands[1:])
    proc = bash(fake, "lasp/xd.sh", *common, env_extra={"CFG": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32"})
    assert proc.returncode == 0, proc.stderr
    assert "xd: LASP / vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32, source imagenet" in proc.stdout
    assert "seeds 1 2 3" in proc.stdout and proc.stdout.count("] run") == 33


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_wrappers_usage_errors(fake):
    for script, args in (("mocoop/base2new.sh", ["eurosat"]), ("mocoop/base2new.sh", ["eurosat", "--dry-run"]),
                         ("lasp/fewshot.sh", []), ("mocoop/fewshot.sh", ["--dry-run"])):
        proc = bash(fake, script, *args)
        assert proc.returncode == 2 and proc.stderr.startswith("Usage: bash scripts/" + script), (script, args)
        assert "Environment" not in proc.stderr
    for script in ("mocoop/xd.sh", "lasp/dg.sh"):
        proc = bash(fake, script, "demo", "--repo-root", str(fake.repo))
        assert proc.returncode == 2 and "takes no DATASET (got 'demo')" in proc.stderr
        assert "demo world is a single dataset" in proc.stderr and "Usage: bash scripts/" + script in proc.stderr
    proc = bash(fake, "mocoop/xd.sh", "--source", "demo", "--repo-root", str(fake.repo))
    assert proc.returncode == 2 and "demo world is a single dataset" in proc.stderr
    for name in ("base2new", "fewshot", "xd", "dg"):
        for method in ("mocoop", "lasp"):
            text = open(os.path.join(REPO, "scripts", method, f"{name}.sh")).read()
            assert "rm -r" not in text and f"protocol_sweep \"$REPO_ROOT/scripts/{method}/{name}.sh\" {name}" in text


def test_transfer_and_fewshot_epoch_recipe_and_zero_shot_folders(fake):
    spec = spec_for(fake, "xd", ["--trainer", "CoOp", "--seeds", "1", "--targets", "dtd", "--load-epoch", "10"])
    train, test = S.plan(spec)
    assert "load_epoch" not in train.expect and test.expect["load_epoch"] == 10
    fields = dict(trainer="CoOp", seed=1, num_shots=16, subsample_classes="all", eval_only=True,
                  dataset="DescribableTextures", model_dir=train.output_dir)
    write_record(test.output_dir, load_epoch=2, **fields)
    with pytest.raises(S.SweepError, match="load_epoch=2 \\(expected 10\\)"):
        test.state()
    # a recipe file names the source's folder when --cfg is absent
    recipe = fake.tmp / "coop_long.yaml"
    recipe.write_text("{}\n")
    spec = spec_for(fake, "dg", ["--trainer", "CoOp", "--seeds", "1", "--config-file", str(recipe)])
    assert spec.cfg == "coop_long" and all("/CoOp/coop_long/seed1" in unix(j.output_dir) for j in S.plan(spec))
    # --zero-shot on a trainer that trains: <cfg>_zeroshot folders, eval-only runs
    spec = spec_for(fake, "fewshot", ["--trainer", "MoCoOp", "--dataset", "dtd", "--shots", "2", "--zero-shot"])
    cfg = S.RECIPES["MoCoOp"]["dtd"]
    assert spec.cfg == f"{cfg}_zeroshot" and unix(spec.config_file).endswith(f"MoCoOp/{cfg}.yaml")
    assert all(j.eval_only and f"/MoCoOp/{cfg}_zeroshot/" in unix(j.output_dir) for j in S.plan(spec))


def test_xd_then_dg_train_the_source_once_and_both_tables_show_it(fake, capsys):
    argv = ["--trainer", "CoOp", "--seeds", "1", "2"]
    assert run_main(fake, "xd", argv + ["--targets", "dtd"]) == 0
    xd_out = capsys.readouterr().out
    assert run_main(fake, "dg", argv + ["--targets", "imagenet_r"]) == 0
    dg_out = capsys.readouterr().out
    phases = [c.split()[0] for c in calls(fake)]
    assert phases.count("train") == 2 and phases.count("eval") == 4  # one source training per seed, not two
    assert dg_out.count("(complete); skipping") == 2  # dg found xd's source runs done
    # source 40 + 16 + seed = 56.5 in both tables; dtd 20 + 3 + seed, imagenet_r 20 + 10 + seed
    for out, target in ((xd_out, "24.50 ± 0.50"), (dg_out, "31.50 ± 0.50")):
        line = next(l for l in out.splitlines() if l.startswith("| CoOp / vit_b16_ctxv1"))
        assert [c.strip() for c in line.strip("|").split("|")][1:3] == ["57.50 ± 0.50", target]
    # the results tool reads the shared source folder for either protocol
    assert R.main(["dg", os.path.join(str(fake.out), "dg")]) == 0
    assert "57.50 ± 0.50" in capsys.readouterr().out


def test_transfer_runs_of_the_older_layout_are_still_used_and_read(fake, capsys):
    spec = spec_for(fake, "xd", ["--seeds", "1", "--targets", "dtd"])
    legacy = spec.run_dir(1, "train")  # <output>/xd/train/imagenet/...: where sweeps before the shared folder trained
    write_record(legacy, trainer="CoOp", seed=1, num_shots=16, subsample_classes="all", eval_only=False,
                 model_dir="", dataset="ImageNet", accuracy=70.0)
    os.makedirs(os.path.join(legacy, "prompt_learner"))
    open(os.path.join(legacy, "prompt_learner", "checkpoint"), "w").write("model.pth.tar-1\n")  # the fake's model
    train, test = S.plan(spec)
    assert train.output_dir == legacy and train.state() == "done" and test.model_dir == legacy
    assert run_main(fake, "xd", ["--seeds", "1", "--targets", "dtd"]) == 0
    out = capsys.readouterr().out
    assert [c.split()[0] for c in calls(fake)] == ["eval"]  # the old source run is evaluated, not retrained
    line = next(l for l in out.splitlines() if l.startswith("| CoOp / vit_b16_ctxv1"))
    assert [c.strip() for c in line.strip("|").split("|")][1:3] == ["70.00 ± 0.00", "24.00 ± 0.00"]
