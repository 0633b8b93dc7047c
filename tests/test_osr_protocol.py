"""The osr sweep's plan (dry run, skip / conflict), the open-set table on a fixture tree, and the curves' PNG."""
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest

from dasslite import results as results_mod
from dasslite import results as R
from dasslite import sweep as S
from dasslite.osr_metrics import evaluate_open_set


def spec_for(argv, tmp_path):
    args = S.parse_args(["osr", *argv, "--data", str(tmp_path), "--output", str(tmp_path / "out")])
    world = SimpleNamespace(root=str(tmp_path), clip_checkpoint=str(tmp_path / "clip.pt"))
    return S.resolve_spec(args, environ={}, demo_world=lambda: world, cwd=str(tmp_path))


def opts_of(job):
    i = job.argv.index("DATASET.NUM_SHOTS")
    rest = job.argv[i:]
    return dict(zip(rest[::2], rest[1::2]))


def test_plan_benchmark_splits_times_seeds(tmp_path):
    jobs = S.plan(spec_for(["--trainer", "CoOp", "--dataset", "osr_cifar10", "--seeds", "1", "2"], tmp_path))
    assert [j.key for j in jobs] == [f"split{s}/seed{seed}" for s in range(5) for seed in (1, 2)]
    job = jobs[7]  # split 3, seed 2
    assert job.output_dir.endswith(osp.join("out", "osr", "split3", "osr_cifar10", "shots_16", "CoOp",
                                            "vit_b16_ctxv1", "seed2"))
    assert not job.eval_only and job.results_path.endswith("osr_results.json")
    assert opts_of(job)["OSR.SPLIT"] == "3" and opts_of(job)["OSR.ENABLED"] == "True"
    assert opts_of(job)["DATASET.SUBSAMPLE_CLASSES"] == "all" and opts_of(job)["OSR.BALANCE"] == "none"
    assert job.expect["osr_split"] == 3 and job.expect["balance"] == "none"
    two = S.plan(spec_for(["--trainer", "CoOp", "--dataset", "osr_cifar10", "--seeds", "1", "--splits", "0,2",
                           "--balance", "dedup"], tmp_path))
    assert [j.key for j in two] == ["split0/seed1", "split2/seed1"] and opts_of(two[1])["OSR.BALANCE"] == "dedup"


def test_plan_coop_dataset_reuses_the_base2new_training(tmp_path):
    jobs = S.plan(spec_for(["--trainer", "CoCoOp", "--dataset", "eurosat", "--seeds", "1"], tmp_path))
    train, osr_job = jobs
    assert train.key == "train_base/seed1" and not train.eval_only
    assert train.output_dir.endswith(osp.join("base2new", "train_base", "eurosat", "shots_16", "CoCoOp",
                                              "vit_b16_c4_ep10_batch1_ctxv1", "seed1"))
    assert train.results_path.endswith("results.json") and "OSR.ENABLED" not in train.argv
    # the base2new sweep plans the very same training job, so either sweep skips it once the other ran it
    b2n = S.plan(S.resolve_spec(S.parse_args(["base2new", "--trainer", "CoCoOp", "--dataset", "eurosat", "--seeds",
                                              "1", "--data", str(tmp_path), "--output", str(tmp_path / "out")]),
                                environ={}, cwd=str(tmp_path)))[0]
    assert (b2n.output_dir, b2n.argv, b2n.expect) == (train.output_dir, train.argv, train.expect)
    assert osr_job.eval_only and osr_job.model_dir == train.output_dir and osr_job.depends_on == [train.key]
    assert osr_job.output_dir.endswith(osp.join("osr", "base_new", "eurosat", "shots_16", "CoCoOp",
                                                "vit_b16_c4_ep10_batch1_ctxv1", "seed1"))
    assert opts_of(osr_job)["DATASET.SUBSAMPLE_CLASSES"] == "base" and opts_of(osr_job)["OSR.ENABLED"] == "True"
    zs = S.plan(spec_for(["--trainer", "ZeroshotCLIP", "--dataset", "demo", "--seeds", "1", "2"], tmp_path))
    assert [j.key for j in zs] == ["base_new/seed1", "base_new/seed2"] and all(j.eval_only for j in zs)
    assert opts_of(zs[0])["MODEL.BACKBONE.NAME"].endswith("clip.pt")


def test_plan_errors(tmp_path):
    with pytest.raises(S.SweepUsageError, match="--splits is for the open-set benchmarks"):
        spec_for(["--dataset", "eurosat", "--splits", "1"], tmp_path)
    with pytest.raises(S.SweepUsageError, match=r"--splits \[5\]"):
        spec_for(["--dataset", "osr_tinyimagenet", "--splits", "5"], tmp_path)
    with pytest.raises(S.SweepUsageError, match="--balance 'vaze' is not one of"):
        spec_for(["--dataset", "osr_cifar10", "--balance", "vaze"], tmp_path)


def test_skip_resume_and_conflict(tmp_path):
    job = S.plan(spec_for(["--trainer", "CoOp", "--dataset", "osr_cifar10", "--seeds", "1", "--splits", "1"],
                          tmp_path))[0]
    assert job.state() == "new"
    os.makedirs(job.output_dir)
    record = {"complete": True, "trainer": "CoOp", "seed": 1, "num_shots": 16, "subsample_classes": "all",
              "eval_only": False, "dataset": "CIFAR10OSR"}
    with open(osp.join(job.output_dir, "results.json"), "w") as f:
        json.dump(record, f)  # the closed-set test finished, the open-set one did not
    assert job.state() == "resume"
    with open(job.results_path, "w") as f:
        json.dump(dict(record, osr_split=1, balance="none"), f)
    assert job.state() == "done"
    with open(job.results_path, "w") as f:
        json.dump(dict(record, osr_split=1, balance="dedup"), f)
    with pytest.raises(S.SweepError, match="balance='dedup'"):
        job.state()


def test_dry_run_prints_the_plan(tmp_path, capsys):
    rc = S.main(["osr", "--trainer", "CoOp", "--dataset", "osr_cifar_plus10", "--seeds", "1", "--splits", "4",
                 "--data", str(tmp_path), "--output", str(tmp_path / "o"), "--dry-run"], environ={})
    out = capsys.readouterr().out
    assert rc == 0 and "osr: CoOp / vit_b16_ctxv1 on osr_cifar_plus10" in out and "[split4/seed1] run" in out
    assert "OSR.SPLIT 4" in out


# ------------------------------------------------------------------------------------------------------------
# Tables and plots
# ------------------------------------------------------------------------------------------------------------
def write_run(root, phase, trainer, seed, rng, balance="none", shift=2.0):
    folder = osp.join(root, phase, "demo", "shots_4", trainer, "demo", f"seed{seed}")
    os.makedirs(folder)
    labels = rng.integers(0, 3, 40)
    known = rng.normal(0, 1, (40, 3))
    known[np.arange(40), labels] += shift
    result = evaluate_open_set(known, labels, rng.normal(0, 1, (30, 3)), logit_scale=10.0)
    per_image = result.pop("per_image")
    np.savez(osp.join(folder, "osr_scores.npz"), **per_image)
    with open(osp.join(folder, "osr_results.json"), "w") as f:
        json.dump({"complete": True, "balance": balance, "osr": result}, f)
    return result


def test_table_and_plot_on_a_fixture_tree(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = str(tmp_path / "osr")
    a = [write_run(root, f"split{s}", "CoCoOp", 1, rng) for s in (0, 1)]
    b = [write_run(root, "split0", "ZeroshotCLIP", seed, rng, shift=0.5) for seed in (1, 2)]
    write_run(root, "split1", "ZeroshotCLIP", 3, rng, balance="dedup")  # another balance mode: listed, not averaged
    os.makedirs(osp.join(root, "split1", "demo", "shots_4", "CoCoOp", "demo", "seed2"))  # unfinished
    tables = R.collect_osr(root)
    text = R.format_osr(tables)
    auroc = [r["metrics"]["mls"]["auroc"] for r in a]
    assert f"{np.mean(auroc):.2f} ± {np.std(auroc):.2f}" in text
    acc = [r["metrics"]["mls"]["acc"] for r in b]
    assert f"{np.mean(acc):.2f} ± {np.std(acc):.2f}" in text
    header = next(line for line in text.splitlines() if line.startswith("| Metric"))
    assert "CoCoOp (demo)" in header and "ZeroshotCLIP (demo)" in header  # side by side
    assert "OpenAUC" not in text and "missing:" in text and "balance 'dedup', not 'none'" in text
    assert "no osr_results.json" in text
    energy = R.format_osr(R.collect_osr(root, score="energy", metrics=list(R.METRIC_NAMES)))
    assert "OpenAUC" in energy and f"{np.mean([r['metrics']['energy']['oscr'] for r in a]):.2f}" in energy

    png = str(tmp_path / "curves.png")
    assert results_mod.main(["osr", root, "--metrics", "all", "--plot", png]) == 0
    out = capsys.readouterr().out
    assert "Plot written to" in out and "Macro-F1 (oracle θ)" in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert results_mod.main(["osr", str(tmp_path / "nothing")]) == 1
    # a run without its per-image scores cannot be drawn: the error names the file
    os.remove(osp.join(root, "split0", "demo", "shots_4", "CoCoOp", "demo", "seed1", "osr_scores.npz"))
    with pytest.raises(FileNotFoundError, match="osr_scores.npz is missing"):
        R.osr_plot_png(R.collect_osr(root))


def test_compare_osr_marks_the_lowest_fpr95_as_best(tmp_path, capsys):
    """`results compare osr`: methods side by side; FPR95 is lower-is-better, the others higher-is-better."""
    from dasslite.results import compare

    rng = np.random.default_rng(1)
    root = str(tmp_path / "osr")
    a = [write_run(root, f"split{s}", "CoCoOp", 1, rng) for s in (0, 1)]
    b = [write_run(root, "split0", "ZeroshotCLIP", seed, rng, shift=0.5) for seed in (1, 2)]
    (cmp,) = compare.compare("osr", root)
    by_trainer = {m.trainer: m for m in cmp.methods}
    for method, runs in ((by_trainer["CoCoOp"], a), (by_trainer["ZeroshotCLIP"], b)):
        for key in ("acc", "auroc", "oscr", "fpr95"):
            assert method.stat("demo", key).mean == pytest.approx(np.mean([r["metrics"]["mls"][key] for r in runs]))
            assert method.stat("demo", key).n == 2
    fpr = {t: m.stat("demo", "fpr95").mean for t, m in by_trainer.items()}
    auroc = {t: m.stat("demo", "auroc").mean for t, m in by_trainer.items()}
    fpr95 = next(m for m in compare.OsrAdapter.metrics if m.key == "fpr95")
    auroc_metric = next(m for m in compare.OsrAdapter.metrics if m.key == "auroc")
    assert cmp.best("demo", fpr95) == {by_trainer[min(fpr, key=fpr.get)].label}
    assert cmp.best("demo", auroc_metric) == {by_trainer[max(auroc, key=auroc.get)].label}
    assert min(fpr, key=fpr.get) != max(fpr, key=fpr.get)  # the fixture's methods differ
    assert results_mod.main(["compare", "osr", root, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "FPR95" in out and "**" in out and "CoCoOp" in out and "ZeroshotCLIP" in out
