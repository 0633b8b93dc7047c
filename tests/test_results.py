"""dasslite.results on synthetic output trees: log parsing (CoOp / ProGrad), results.json, missing runs, tables."""
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dasslite import results as R

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------------------
# synthetic runs
# ------------------------------------------------------------------------------------------------------------
def result_block(acc, decimals=1):
    f = f"{{:.{decimals}f}}"
    return ["=> result", "* total: 100", f"* correct: {int(round(acc))}", f"* accuracy: {f.format(acc)}%",
            f"* error: {f.format(100 - acc)}%", f"* macro_f1: {f.format(acc - 1)}%"]


def train_log(acc=None, finished=True, signal="Finish training", decimals=1, val_acc=None):
    lines = ["***************", "** Arguments **", "***************", "eval_only: False", "seed: 1",
             "epoch [1/2] batch [5/5] loss 1.0 acc 50.0"]
    if val_acc is not None:  # a validation block during training, before the end signal
        lines += ["Evaluate on the *val* set"] + result_block(val_acc, decimals)
    lines += ["epoch [2/2] batch [5/5] loss 0.5 acc 70.0", "Checkpoint saved to x/prompt_learner/model.pth.tar-2"]
    if finished:
        lines += [signal, "Deploy the last-epoch model", "Evaluate on the *test* set"]
        if acc is not None:
            lines += result_block(acc, decimals) + ["Elapsed: 0:00:03"]
    return "\n".join(lines) + "\n"


def eval_log(acc=None, decimals=1):
    lines = ["eval_only: True", "Loading weights to prompt_learner from x (epoch = 2)", "Evaluate on the *test* set"]
    if acc is not None:
        lines += result_block(acc, decimals)
    return "\n".join(lines) + "\n"


def write_run(path, log=None, record=None):
    os.makedirs(path, exist_ok=True)
    if log is not None:
        with open(os.path.join(path, "log.txt"), "w") as f:
            f.write(log)
    if record is not None:
        with open(os.path.join(path, "results.json"), "w") as f:
            json.dump(record, f)
    return str(path)


def record(acc, sub="base", seed=1, complete=True, **kw):
    return {"complete": complete, "split": "test", "accuracy": acc, "error_rate": 100 - acc, "macro_f1": acc - 2,
            "total": 10000, "correct": round(acc * 100), "trainer": "CoOp", "subsample_classes": sub, "seed": seed,
            "num_shots": 16, **kw}


# ------------------------------------------------------------------------------------------------------------
# parse_log / read_run
# ------------------------------------------------------------------------------------------------------------
def test_parse_log_only_after_end_signal_last_match_wins(tmp_path):
    log = train_log(acc=81.3, val_acc=99.0)
    log += "\n".join(result_block(82.5)) + "\n"  # a later block after the end signal wins
    write_run(tmp_path, log)
    assert R.parse_log(str(tmp_path / "log.txt")) == (82.5, None)
    assert R.parse_log(str(tmp_path / "log.txt"), keyword="macro_f1")[0] == 81.5
    assert R.parse_log(str(tmp_path / "log.txt"), keyword="error_rate")[0] == 17.5


def test_parse_log_prograd_finished_training_two_decimals(tmp_path):
    write_run(tmp_path, train_log(acc=85.25, signal="Finished training", decimals=2))
    assert R.parse_log(str(tmp_path / "log.txt")) == (85.25, None)


def test_parse_log_unfinished_training_is_missing_even_with_a_val_result(tmp_path):
    write_run(tmp_path, train_log(finished=False, val_acc=90.0))
    value, problem = R.parse_log(str(tmp_path / "log.txt"))
    assert value is None and "Finish training" in problem
    # 'auto' does not accept the validation block of a training log either
    assert R.parse_log(str(tmp_path / "log.txt"), signal="auto")[0] is None


def test_parse_log_finished_but_test_missing(tmp_path):
    write_run(tmp_path, train_log(acc=None))
    value, problem = R.parse_log(str(tmp_path / "log.txt"))
    assert value is None and "accuracy" in problem


def test_parse_log_test_signal_and_auto(tmp_path):
    write_run(tmp_path, eval_log(70.4))
    path = str(tmp_path / "log.txt")
    assert R.parse_log(path, signal="test") == (70.4, None)
    assert R.parse_log(path, signal="auto") == (70.4, None)
    assert R.parse_log(path, signal="train")[0] is None  # CoOp without --test-log finds nothing


def test_read_run_prefers_complete_results_json(tmp_path):
    run = R.read_run(write_run(tmp_path / "seed1", train_log(acc=50.0), record(77.7)))
    assert run.value == 77.7 and run.source.endswith("results.json") and run.seed == 1
    run = R.read_run(str(tmp_path / "seed1"), log_only=True)
    assert run.value == 50.0 and run.source.endswith("log.txt")
    run = R.read_run(str(tmp_path / "seed1"), keyword="error")
    assert run.value == pytest.approx(22.3)


def test_read_run_incomplete_or_mismatched_record_is_missing(tmp_path):
    run = R.read_run(write_run(tmp_path / "a", train_log(acc=50.0), record(77.7, complete=False)))
    assert not run.complete and "not marked complete" in run.problem
    run = R.read_run(write_run(tmp_path / "b", None, record(77.7, sub="base")), expect={"subsample_classes": "new"})
    assert not run.complete and "subsample_classes" in run.problem
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text("{broken")
    assert "unreadable" in R.read_run(str(tmp_path / "c")).problem
    (tmp_path / "d").mkdir()
    assert "no results.json or log.txt" in R.read_run(str(tmp_path / "d")).problem


# ------------------------------------------------------------------------------------------------------------
# summarize (parse_test_res)
# ------------------------------------------------------------------------------------------------------------
def test_summarize_log_only_tree_population_std_and_ci95(tmp_path):
    for seed, acc in zip((1, 2, 3), (80.0, 82.0, 84.0)):
        write_run(tmp_path / f"seed{seed}", train_log(acc))
    (tmp_path / "notes.txt").write_text("a stray file: CoOp's parser would assert, we ignore it")
    s = R.summarize(str(tmp_path))
    assert s.values == [80.0, 82.0, 84.0]
    assert s.mean == pytest.approx(82.0)
    assert s.spread == pytest.approx(math.sqrt(8 / 3))  # np.std, ddof=0
    assert s.spread == pytest.approx(np.std([80, 82, 84]))
    s95 = R.summarize(str(tmp_path), ci95=True)
    assert s95.spread == pytest.approx(1.96 * math.sqrt(8 / 3) / math.sqrt(3))
    text = R.format_summary(s)
    assert f"file: {tmp_path / 'seed1' / 'log.txt'}. accuracy: 80.00%." in text
    assert "* accuracy: 82.00% +- 1.63%" in text


def test_summarize_results_json_only_and_mixed_with_half_finished(tmp_path):
    write_run(tmp_path / "seed1", None, record(70.0, seed=1))
    write_run(tmp_path / "seed2", train_log(74.0))
    write_run(tmp_path / "seed3", train_log(finished=False, val_acc=99.0))  # half-finished: never averaged
    s = R.summarize(str(tmp_path))
    assert s.values == [70.0, 74.0]
    assert s.mean == pytest.approx(72.0) and s.spread == pytest.approx(2.0)
    assert [r.label for r in s.missing] == ["seed3"]
    text = R.format_summary(s)
    assert "missing: " in text and "seed3" in text and "2 complete, 1 missing" in text


def test_summarize_eval_log(tmp_path):
    for seed, acc in ((1, 60.0), (2, 64.0)):
        write_run(tmp_path / f"seed{seed}", eval_log(acc))
    with pytest.raises(R.NoResultsError):
        R.summarize(str(tmp_path), log_only=True)  # CoOp without --test-log: nothing after 'Finish training'
    assert R.summarize(str(tmp_path), test_log=True).mean == pytest.approx(62.0)


def test_summarize_errors_name_the_folder(tmp_path):
    with pytest.raises(R.NoResultsError, match=f"no complete runs under {tmp_path}"):
        R.summarize(str(tmp_path))
    with pytest.raises(R.NoResultsError, match="no such folder"):
        R.summarize(str(tmp_path / "nope"))
    write_run(tmp_path / "seed1", train_log(finished=False))
    with pytest.raises(R.NoResultsError, match="seed1"):
        R.summarize(str(tmp_path))


def test_summarize_multi_exp(tmp_path):
    for exp, accs in (("nctx4", (80.0, 82.0)), ("nctx16", (70.0, 72.0))):
        for seed, acc in enumerate(accs, 1):
            write_run(tmp_path / exp / f"seed{seed}", train_log(acc))
    (tmp_path / "empty_exp").mkdir()
    experiments, overall = R.summarize_multi(str(tmp_path))
    assert [e.mean for e in experiments] == [71.0, 81.0]  # sorted: nctx16, nctx4
    assert overall.mean == pytest.approx(76.0) and overall.spread == pytest.approx(5.0)
    assert [r.label for r in overall.missing] == ["empty_exp"]


def test_cli_summarize_and_parse_test_res_wrapper(tmp_path, capsys):
    for seed, acc in ((1, 50.0), (2, 52.0)):
        write_run(tmp_path / "exp" / f"seed{seed}", train_log(acc, signal="Finished training", decimals=2))
    assert R.main([str(tmp_path / "exp")]) == 0
    assert "* accuracy: 51.00% +- 1.00%" in capsys.readouterr().out
    assert R.main(["summarize", str(tmp_path / "exp"), "--ci95", "--keyword", "macro_f1"]) == 0
    assert f"* macro_f1: 50.00% +- {1.96 / math.sqrt(2):.2f}%" in capsys.readouterr().out
    assert R.main(["summarize", str(tmp_path / "empty")]) == 1
    assert f"no complete runs under {tmp_path / 'empty'}" in capsys.readouterr().err
    # the top-level CoOp-named script, as a user runs it
    proc = subprocess.run([sys.executable, os.path.join(REPO, "parse_test_res.py"), str(tmp_path), "--multi-exp"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "* accuracy: 51.00% +- 0.00%" in proc.stdout
    proc = subprocess.run([sys.executable, os.path.join(REPO, "parse_test_res.py"), str(tmp_path / "exp"),
                           "--test-log"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "51.00%" in proc.stdout  # '=> result' follows 'Finished training' too


# ------------------------------------------------------------------------------------------------------------
# base-to-new tables
# ------------------------------------------------------------------------------------------------------------
def b2n_dir(root, split, ds, seed, trainer="CoOp", cfg="vit_b16_ctxv1", shots=16):
    return root / "base2new" / split / ds / f"shots_{shots}" / trainer / cfg / f"seed{seed}"


@pytest.fixture
def b2n_tree(tmp_path):
    """eurosat: 3 seeds everywhere (mixed sources); dtd: seed3 of new is half-finished."""
    eurosat_base, eurosat_new = (80.0, 82.0, 84.0), (60.0, 62.0, 64.0)
    for seed in (1, 2, 3):
        b, n = eurosat_base[seed - 1], eurosat_new[seed - 1]
        if seed == 1:
            write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed), None, record(b, "base", seed))
        else:
            write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed), train_log(b))
        write_run(b2n_dir(tmp_path, "test_new", "eurosat", seed), eval_log(n), record(n, "new", seed))
    for seed, (b, n) in zip((1, 2, 3), ((70.0, 50.0), (72.0, 52.0), (74.0, None))):
        write_run(b2n_dir(tmp_path, "train_base", "dtd", seed), train_log(b, signal="Finished training", decimals=2))
        write_run(b2n_dir(tmp_path, "test_new", "dtd", seed), eval_log(n))
    return tmp_path


def test_base2new_table_numbers_hand_computed(b2n_tree):
    (table,) = R.collect_base2new(str(b2n_tree))
    assert (table.shots, table.trainer, table.cfg) == ("shots_16", "CoOp", "vit_b16_ctxv1")
    assert [r.dataset for r in table.rows] == ["dtd", "eurosat"]  # the papers' order
    dtd, eurosat = table.rows
    # eurosat: B = 82, N = 62, H = 2*82*62/(82+62)
    assert eurosat.base.mean == pytest.approx(82.0) and eurosat.new.mean == pytest.approx(62.0)
    assert eurosat.h == pytest.approx(2 * 82 * 62 / 144)  # 70.6111
    per_seed_h = [2 * 80 * 60 / 140, 2 * 82 * 62 / 144, 2 * 84 * 64 / 148]
    assert eurosat.h_spread == pytest.approx(np.std(per_seed_h))
    assert eurosat.base.spread == pytest.approx(np.std([80, 82, 84]))
    # dtd: new seed3 is half-finished -> 2 seeds for New, 3 for Base
    assert (dtd.base.n, dtd.new.n) == (3, 2)
    assert dtd.base.mean == pytest.approx(72.0) and dtd.new.mean == pytest.approx(51.0)
    assert dtd.h == pytest.approx(2 * 72 * 51 / 123)
    assert [r.label for r in dtd.missing] == ["seed3"]
    avg = table.average
    assert avg["base"] == pytest.approx(77.0) and avg["new"] == pytest.approx(56.5)
    assert avg["h"] == pytest.approx(2 * 77 * 56.5 / (77 + 56.5))  # H of the averages, not the average of H
    rows = R.table_rows(table)
    assert rows[1] == ["eurosat", "82.00 ± 1.63", "62.00 ± 1.63", f"70.61 ± {np.std(per_seed_h):.2f}", "3"]
    assert rows[0][4] == "3/2"
    assert rows[2][0] == "Average" and rows[2][3] == f"{2 * 77 * 56.5 / 133.5:.2f}"
    text = R.format_base2new([table])
    assert "| Dataset" in text and "Missing runs (not averaged): 1" in text and "never reaches" in text


def test_base2new_ci95_and_filters(b2n_tree):
    (table,) = R.collect_base2new(str(b2n_tree / "base2new"), datasets=["eurosat"], ci95=True)
    (row,) = table.rows
    assert row.base.spread == pytest.approx(1.96 * np.std([80, 82, 84]) / math.sqrt(3))
    assert table.average is None  # a single dataset has no Average row
    (table,) = R.collect_base2new(str(b2n_tree), datasets=["eurosat"], trainer="CoOp", cfg="vit_b16_ctxv1",
                                  shots=16, seeds=[1, 2, 4])
    (row,) = table.rows
    assert row.base.n == 2 and [r.problem for r in row.missing] == ["not run (no such folder)"] * 2
    with pytest.raises(R.NoResultsError, match="no complete runs under"):
        R.collect_base2new(str(b2n_tree), trainer="KgCoOp")


def test_base2new_zero_shot_layout_eval_only_base(tmp_path):
    for seed in (1, 2):
        write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed, "ZeroshotCLIP", "vit_b16"), eval_log(56.0))
        write_run(b2n_dir(tmp_path, "test_new", "eurosat", seed, "ZeroshotCLIP", "vit_b16"), eval_log(64.0))
    (table,) = R.collect_base2new(str(tmp_path))
    (row,) = table.rows
    assert (row.base.n, row.new.n) == (2, 2) and row.h == pytest.approx(2 * 56 * 64 / 120)
    assert row.h_spread == 0.0


def test_base2new_record_of_wrong_subsample_is_not_counted(tmp_path):
    write_run(b2n_dir(tmp_path, "train_base", "eurosat", 1), None, record(80.0, "base"))
    write_run(b2n_dir(tmp_path, "test_new", "eurosat", 1), None, record(60.0, "base"))  # wrong protocol
    (table,) = R.collect_base2new(str(tmp_path))
    assert table.rows[0].new.n == 0 and "subsample_classes" in table.rows[0].missing[0].problem
    assert R.table_rows(table)[0][2] == "-" and R.table_rows(table)[0][3] == "-"


def test_base2new_errors_and_outputs(b2n_tree, tmp_path, capsys):
    with pytest.raises(R.NoResultsError, match="expected train_base/ and test_new/"):
        R.collect_base2new(str(b2n_tree / "base2new" / "train_base"))
    with pytest.raises(R.NoResultsError, match="no such folder"):
        R.collect_base2new(str(tmp_path / "absent"))
    csv_path, md_path = tmp_path / "t" / "b2n.csv", tmp_path / "t" / "b2n.md"
    assert R.main(["base2new", str(b2n_tree), "--format", "plain", "--csv", str(csv_path),
                   "--markdown", str(md_path)]) == 0
    out = capsys.readouterr().out
    assert "Average" in out and "70.61" in out and "| Dataset" not in out  # plain format
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("shots,trainer,cfg,dataset,base_mean")
    assert lines[2].startswith("shots_16,CoOp,vit_b16_ctxv1,eurosat,82.0000,")
    assert lines[3].split(",")[3] == "Average"
    assert md_path.read_text().startswith("### Base-to-new: CoOp / vit_b16_ctxv1 / shots 16")
    assert R.main(["base2new", str(tmp_path / "absent")]) == 1
    assert f"no complete runs under {tmp_path / 'absent'}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# per-dataset recipes share one base-to-new table
# ------------------------------------------------------------------------------------------------------------
def test_base2new_per_dataset_recipes_share_a_table(tmp_path):
    from dasslite.recipes import RECIPES

    lasp = {"eurosat": RECIPES["LASP"]["eurosat"], "dtd": RECIPES["LASP"]["dtd"]}
    for ds, cfg in lasp.items():
        for split, sub, acc in (("train_base", "base", 90.0), ("test_new", "new", 70.0)):
            write_run(b2n_dir(tmp_path, split, ds, 1, "LASP", cfg), None, record(acc, sub, trainer="LASP"))
    other = "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"  # not eurosat's default: a table of its own
    write_run(b2n_dir(tmp_path, "train_base", "eurosat", 1, "LASP", other), None, record(50.0, "base"))
    tables = R.collect_base2new(str(tmp_path))
    assert [(t.trainer, t.cfg) for t in tables] == [("LASP", R.PER_DATASET), ("LASP", other)]
    shared = tables[0]
    assert [(r.dataset, r.cfg) for r in shared.rows] == [("dtd", lasp["dtd"]), ("eurosat", lasp["eurosat"])]
    assert shared.average["base"] == pytest.approx(90.0)
    text = R.format_base2new(tables)
    assert f"Recipes: dtd: {lasp['dtd']}; eurosat: {lasp['eurosat']}" in text
    assert "LASP / per-dataset recipes / shots 16" in text
    # missing folder of a split: listed, not silently absent
    assert f"{os.path.join('test_new', 'eurosat', 'shots_16', 'LASP', other)}: not run (no such folder)" in text
    # --cfg selects one recipe exactly
    (only,) = R.collect_base2new(str(tmp_path), cfg=lasp["dtd"])
    assert only.cfg == lasp["dtd"] and [r.dataset for r in only.rows] == ["dtd"]


# ------------------------------------------------------------------------------------------------------------
# published numbers
# ------------------------------------------------------------------------------------------------------------
ELEVEN = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
          "sun397", "dtd", "eurosat", "ucf101")


def test_paper_json_contents():
    paper = R.load_paper()
    t1 = paper["base2new"]
    assert t1["source"] == "MoCoOp paper, Table 1"
    assert set(t1["methods"]) == {"CLIP", "CoOp", "CoCoOp", "LASP", "KgCoOp", "MoCoOp"}
    for method, entry in t1["methods"].items():
        assert tuple(entry["datasets"]) == ELEVEN, method
    assert t1["methods"]["MoCoOp"]["average"] == {"base": 83.32, "new": 77.34, "h": 80.17}
    assert t1["methods"]["MoCoOp"]["datasets"]["imagenet"] == {"base": 76.52, "new": 69.2, "h": 72.67}
    assert t1["methods"]["LASP"]["datasets"]["eurosat"] == {"base": 95.0, "new": 83.37, "h": 88.86}
    assert t1["methods"]["CLIP"]["average"] == {"base": 70.25, "new": 74.22, "h": 71.57}
    kg = t1["methods"]["KgCoOp"]["average"]
    assert (kg["base"], kg["new"], kg["h"]) == (73.63, 76.9, 83.22)  # as printed, not fixed
    assert kg["unreliable"] is True and "garbled" in kg["note"]
    assert not any(e["average"].get("unreliable") for m, e in t1["methods"].items() if m != "KgCoOp")
    assert paper["dg"]["methods"]["MoCoOp"] == {"imagenet": 70.08, "imagenet_r": 75.88, "imagenet_a": 48.97,
                                                "imagenet_sketch": 46.5, "imagenetv2": 61.31}
    assert paper["topk"]["k"]["K=3"]["ucf101"] == {"base": 84.23, "new": 68.63, "h": 75.63}
    assert R.paper_method(paper, "ZeroshotCLIP") == "CLIP" and R.paper_method(paper, "MoCoOp") == "MoCoOp"
    assert R.paper_method(paper, "Mine") is None


def _b2n_all(tmp_path, trainer, datasets, cfg="c"):
    for ds in datasets:
        write_run(b2n_dir(tmp_path, "train_base", ds, 1, trainer, cfg), None, record(80.0, "base", trainer=trainer))
        write_run(b2n_dir(tmp_path, "test_new", ds, 1, trainer, cfg), None, record(70.0, "new", trainer=trainer))


def test_base2new_paper_columns(tmp_path, capsys):
    paper = R.load_paper()
    _b2n_all(tmp_path / "a", "MoCoOp", ("eurosat", "dtd", "demo"))
    (table,) = R.collect_base2new(str(tmp_path / "a"))
    rows = R.table_rows(table, paper)
    assert [r[0] for r in rows] == ["dtd", "eurosat", "demo", "Average"]
    assert rows[0][5:] == ["81.94", "60.99", "69.93"] and rows[1][5:] == ["94.79", "85.18", "89.73"]
    assert rows[2][5:] == ["", "", ""]  # the demo world is not in the paper
    # a subset of the datasets: the mean of the paper's rows for those datasets, marked †
    b, n = (81.94 + 94.79) / 2, (60.99 + 85.18) / 2
    assert rows[3][5:] == [f"{b:.2f}†", f"{n:.2f}†", f"{2 * b * n / (b + n):.2f}†"]
    text = R.format_base2new([table], paper=paper)
    assert "Paper Base" in text and "† mean of the paper's rows for the 2 dataset(s) of this average (dtd, eurosat)" \
        in text and "MoCoOp paper, Table 1" in text
    # all eleven datasets: the printed average; KgCoOp's is marked unreliable with its note
    _b2n_all(tmp_path / "b", "KgCoOp", ELEVEN)
    _b2n_all(tmp_path / "b", "MoCoOp", ELEVEN)
    _b2n_all(tmp_path / "b", "ZeroshotCLIP", ("caltech101",))
    kg, mo, zs = R.collect_base2new(str(tmp_path / "b"))
    assert R.table_rows(mo, paper)[-1][5:] == ["83.32", "77.34", "80.17"]
    assert R.table_rows(kg, paper)[-1][5:] == ["73.63*", "76.90*", "83.22*"]
    assert "* KgCoOp's printed average: Printed as 73.63 / 76.90 / 83.22" in R.format_base2new([kg], paper=paper)
    assert R.table_rows(zs, paper)[0][5:] == ["96.84", "94.00", "95.40"]  # ZeroshotCLIP -> CLIP
    # the CLI, with CSV numbers (marks stripped)
    csv_path = tmp_path / "p.csv"
    assert R.main(["base2new", str(tmp_path / "b"), "--trainer", "KgCoOp", "--paper", "--csv", str(csv_path)]) == 0
    assert "| Paper Base" in capsys.readouterr().out
    lines = csv_path.read_text().splitlines()
    assert lines[0].endswith(",paper_base,paper_new,paper_h") and lines[-1].endswith(",73.63,76.90,83.22")
    assert R.main(["base2new", str(tmp_path / "b"), "--trainer", "KgCoOp"]) == 0
    assert "Paper" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------
# few-shot tables
# ------------------------------------------------------------------------------------------------------------
def fs_dir(root, ds, shots, seed, trainer="CoOp", cfg="vit_b16_ctxv1"):
    return root / "fewshot" / ds / f"shots_{shots}" / trainer / cfg / f"seed{seed}"


def fs_record(acc, shots, seed, trainer="CoOp"):
    return record(acc, "all", seed, num_shots=shots, trainer=trainer)


def test_fewshot_table_hand_computed(tmp_path, capsys):
    accs = {("eurosat", 1): (50.0, 52.0, 54.0), ("eurosat", 16): (80.0, 81.0, 85.0), ("dtd", 1): (40.0, 44.0)}
    for (ds, k), values in accs.items():
        for seed, acc in enumerate(values, 1):
            write_run(fs_dir(tmp_path, ds, k, seed), None, fs_record(acc, k, seed))
    write_run(fs_dir(tmp_path, "dtd", 1, 3), train_log(finished=False))  # half-finished: missing
    write_run(fs_dir(tmp_path, "dtd", 16, 1), None, fs_record(60.0, 8, 1))  # record of another shot count
    (table,) = R.collect_fewshot(str(tmp_path))
    assert table.columns == ["shots_1", "shots_16"] and [r.label for r in table.rows] == ["dtd", "eurosat"]
    dtd, eurosat = table.rows
    assert eurosat.cells["shots_1"].mean == pytest.approx(52.0)
    assert eurosat.cells["shots_1"].spread == pytest.approx(np.std([50, 52, 54]))
    assert eurosat.cells["shots_16"].spread == pytest.approx(np.std([80, 81, 85]))
    assert dtd.cells["shots_1"].n == 2 and dtd.cells["shots_16"].n == 0
    assert "num_shots=8, expected 16" in dtd.cells["shots_16"].runs[0].problem
    rows = R.grid_rows(table)
    assert R.grid_headers(table) == ["Dataset", "1 shot", "16 shots", "Seeds"]
    assert rows[0] == ["dtd", "42.00 ± 2.00", "-", "0-2"]
    assert rows[1] == ["eurosat", "52.00 ± 1.63", f"82.00 ± {np.std([80, 81, 85]):.2f}", "3"]
    assert rows[2] == ["Average", "47.00", "82.00 (1/2)", ""]  # (52 + 42) / 2; only eurosat has 16 shots
    text = R.format_grids([table])
    assert "Few-shot (all classes): CoOp / vit_b16_c4" not in text and "CoOp / vit_b16_ctxv1" in text
    assert "Missing runs (not averaged): 2" in text
    # ci95, filters, CLI with CSV / Markdown
    (t95,) = R.collect_fewshot(str(tmp_path / "fewshot"), datasets=["eurosat"], shots=[1], ci95=True)
    assert t95.columns == ["shots_1"] and t95.rows[0].cells["shots_1"].spread == pytest.approx(
        1.96 * np.std([50, 52, 54]) / math.sqrt(3))
    csv_path, md_path = tmp_path / "o" / "fs.csv", tmp_path / "o" / "fs.md"
    assert R.main(["fewshot", str(tmp_path), "--csv", str(csv_path), "--markdown", str(md_path)]) == 0
    assert "| eurosat   | 52.00 ± 1.63" in capsys.readouterr().out
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "protocol,source,shots,trainer,cfg,row,column,mean,spread,n,spread_kind"
    assert "fewshot,,shots_1,CoOp,vit_b16_ctxv1,eurosat,shots_1,52.0000,1.6330,3,std" in lines
    assert "fewshot,,shots_1,CoOp,vit_b16_ctxv1,Average,shots_1,47.0000,,2/2," in lines
    assert md_path.read_text().startswith("### Few-shot (all classes): CoOp / vit_b16_ctxv1")
    assert R.main(["fewshot", str(tmp_path / "absent")]) == 1
    with pytest.raises(R.NoResultsError, match="no complete runs"):
        R.collect_fewshot(str(tmp_path), trainer="LASP")


def make_fewshot_plot_tree(root):
    """Two datasets, two trainers (CoOp with two cfgs), shots 1 2 4; CoOp/c1 has no dtd 2-shot run at all and a
    half-finished dtd 4-shot seed."""
    for trainer, cfg, base in (("CoOp", "c1", 40.0), ("CoOp", "c2", 45.0), ("KgCoOp", "k", 50.0)):
        for ds, offset in (("eurosat", 20.0), ("dtd", 0.0)):
            for k in (1, 2, 4):
                if (trainer, cfg, ds, k) == ("CoOp", "c1", "dtd", 2):
                    continue
                for seed in (1, 2):
                    acc = base + offset + 5 * k + seed
                    write_run(fs_dir(root, ds, k, seed, trainer, cfg), None, fs_record(acc, k, seed, trainer))
    write_run(fs_dir(root, "dtd", 4, 3, "CoOp", "c1"), train_log(finished=False))


def test_fewshot_curves_skip_missing_points(tmp_path):
    make_fewshot_plot_tree(tmp_path)
    tables = R.collect_fewshot(str(tmp_path))
    shots, panels, curves = R.fewshot_curves(tables)
    assert shots == [1, 2, 4] and panels == ["dtd", "eurosat", "Average"]
    # a trainer with two tables gets its cfg in the legend, one with a single table does not
    assert [c.label for c in curves] == ["CoOp (c1)", "CoOp (c2)", "KgCoOp"]
    c1 = curves[0]
    assert sorted(c1.points["dtd"]) == [1, 4]  # no 2-shot point: the line breaks, nothing is interpolated
    assert c1.points["dtd"][4] == (pytest.approx(61.5), pytest.approx(0.5))  # the half-finished seed is left out
    assert c1.points["eurosat"][2] == (pytest.approx(71.5), pytest.approx(0.5))
    # the Average of a line only where it has both datasets
    assert sorted(c1.points["Average"]) == [1, 4]
    assert c1.points["Average"][1][0] == pytest.approx((46.5 + 66.5) / 2)
    assert sorted(curves[2].points["Average"]) == [1, 2, 4]


def test_fewshot_plot_cli_and_function(tmp_path, capsys):
    make_fewshot_plot_tree(tmp_path)
    png = tmp_path / "out" / "fewshot.png"
    assert R.main(["fewshot", str(tmp_path), "--plot", str(png)]) == 0
    assert f"Plot written to {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(p.name.endswith(".tmp") for p in png.parent.iterdir())  # written atomically, nothing left over
    # the function, from a ROOT or from tables
    again = tmp_path / "again.png"
    assert R.plot_fewshot(str(tmp_path), str(again), title="mine") == str(again)
    assert again.read_bytes()[:4] == b"\x89PNG"
    (one,) = R.collect_fewshot(str(tmp_path), trainer="KgCoOp", datasets=["eurosat"])
    assert R.plot_fewshot([one], str(tmp_path / "one.png")).endswith("one.png")  # a single panel, no Average


def test_fewshot_plot_nothing_to_plot_names_root(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    target = tmp_path / "never.png"
    with pytest.raises(R.NoResultsError, match=f"no complete runs under {re.escape(str(empty))}"):
        R.plot_fewshot(str(empty), str(target))
    with pytest.raises(R.NoResultsError, match=f"nothing to plot under {re.escape(str(empty))}"):
        R.plot_fewshot([], str(target), root=str(empty))
    # a table whose only column is no shots_<K> folder: nothing to place on the axis; its root is named
    cell = R.Cell([R.Run(path="seed1", value=50.0)])
    odd = R.GridTable("fewshot", str(tmp_path / "odd"), "CoOp", "c", "", "", ["shots_x"],
                      [R.GridRow("eurosat", {"shots_x": cell}, "CoOp", "c")])
    with pytest.raises(R.NoResultsError, match=f"nothing to plot under {re.escape(str(tmp_path / 'odd'))}"):
        R.plot_fewshot([odd], str(target))
    assert not target.exists()
    assert R.main(["fewshot", str(empty), "--plot", str(target)]) == 1
    assert f"no complete runs under {empty}" in capsys.readouterr().err and not target.exists()


# ------------------------------------------------------------------------------------------------------------
# cross-dataset / domain-generalisation tables
# ------------------------------------------------------------------------------------------------------------
def tr_dir(root, protocol, phase, ds, seed, trainer="CoOp", cfg="vit_b16_ctxv1"):
    return root / protocol / phase / ds / "shots_16" / trainer / cfg / f"seed{seed}"


def make_transfer_tree(root, protocol, targets, trainer="CoOp", cfg="vit_b16_ctxv1", base=60.0):
    """Source: base + seed; target i: base - 10 * (i + 1) + 2 * seed (seeds 1, 2)."""
    for seed in (1, 2):
        model = tr_dir(root, protocol, "train", "imagenet", seed, trainer, cfg)
        write_run(model, None, record(base + seed, "all", seed, num_shots=16, model_dir="", trainer=trainer))
        for i, target in enumerate(targets):
            write_run(tr_dir(root, protocol, "test", target, seed, trainer, cfg), None,
                      record(base - 10 * (i + 1) + 2 * seed, "all", seed, num_shots=16, trainer=trainer,
                             model_dir=str(model)))


def test_xd_table_hand_computed(tmp_path, capsys):
    make_transfer_tree(tmp_path, "xd", ["dtd", "caltech101"])
    make_transfer_tree(tmp_path, "xd", ["dtd", "caltech101"], "LASP", "c25", base=70.0)
    # a caltech101 evaluation of a model trained elsewhere does not count
    write_run(tr_dir(tmp_path, "xd", "test", "caltech101", 2), None,
              record(99.0, "all", 2, num_shots=16, model_dir="out/xd/train/sun397/shots_16/CoOp/vit_b16_ctxv1/seed2"))
    (table,) = R.collect_transfer(str(tmp_path), "xd")
    assert table.source == "imagenet" and table.columns == ["imagenet", "caltech101", "dtd"]
    assert R.grid_headers(table) == ["Method", "imagenet (source)", "caltech101", "dtd", "Target avg", "Seeds"]
    coop, lasp = R.grid_rows(table)
    # CoOp: source 61 / 62; dtd (i=0) 52 / 54; caltech101 (i=1) only seed 1: 42
    assert coop == ["CoOp / vit_b16_ctxv1", "61.50 ± 0.50", "42.00 ± 0.00", "53.00 ± 1.00", "47.50", "1-2"]
    assert lasp == ["LASP / c25", "71.50 ± 0.50", "53.00 ± 1.00", "63.00 ± 1.00", "58.00", "2"]
    text = R.format_grids([table])
    assert "evaluated a model trained on sun397, not imagenet" in text
    assert R.main(["xd", str(tmp_path), "--paper", "--trainer", "LASP", "--targets", "dtd"]) == 0
    out = capsys.readouterr().out
    assert "The paper has no xd table" in out and "caltech101" not in out and "| 63.00 ± 1.00 | 63.00 " in out


def test_dg_table_with_paper_row_and_zero_shot(tmp_path, capsys):
    targets = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    make_transfer_tree(tmp_path, "dg", list(reversed(targets)), "MoCoOp", "c_imagenet")
    for seed in (1, 2):  # zero-shot: evaluations without a model dir count
        write_run(tr_dir(tmp_path, "dg", "train", "imagenet", seed, "ZeroshotCLIP", "vit_b16"), None,
                  record(66.0, "all", seed, num_shots=16, model_dir="", eval_only=True, trainer="ZeroshotCLIP"))
        write_run(tr_dir(tmp_path, "dg", "test", "imagenet_a", seed, "ZeroshotCLIP", "vit_b16"), None,
                  record(47.0, "all", seed, num_shots=16, model_dir="", eval_only=True, trainer="ZeroshotCLIP"))
    paper = R.load_paper()
    (table,) = R.collect_transfer(str(tmp_path / "dg"), "dg", paper=paper)
    assert table.columns == ["imagenet"] + targets  # V2, Sketch, A, R
    rows = R.grid_rows(table)
    assert [r[0] for r in rows] == ["MoCoOp / c_imagenet", "MoCoOp (paper)", "ZeroshotCLIP / vit_b16",
                                    "CLIP (paper)"]
    # reversed order: imagenet_r i=0 -> 52/54, imagenet_a 42/44, imagenet_sketch 32/34, imagenetv2 22/24
    assert rows[0][1:] == ["61.50 ± 0.50", "23.00 ± 1.00", "33.00 ± 1.00", "43.00 ± 1.00", "53.00 ± 1.00",
                           "38.00", "2"]
    mo = paper["dg"]["methods"]["MoCoOp"]
    assert rows[1][1:6] == [f"{mo[c]:.2f}" for c in table.columns] == ["70.08", "61.31", "46.50", "48.97", "75.88"]
    assert rows[1][6] == f"{np.mean([mo[t] for t in targets]):.2f}" and rows[1][7] == "paper"
    assert rows[2][1:] == ["66.00 ± 0.00", "-", "-", "47.00 ± 0.00", "-", "47.00 (1/4)", "0-2"]
    assert rows[3][1] == "66.73"
    text = R.format_grids([table])
    assert "Paper rows: MoCoOp paper, Appendix B (Table 3)" in text
    csv_path = tmp_path / "dg.csv"
    assert R.main(["dg", str(tmp_path), "--paper", "--trainer", "MoCoOp", "--csv", str(csv_path)]) == 0
    capsys.readouterr()
    lines = csv_path.read_text().splitlines()
    assert "dg,imagenet,shots_16,MoCoOp,paper,MoCoOp (paper),imagenet_a,48.9700,,," in lines
    assert "dg,imagenet,shots_16,MoCoOp,c_imagenet,MoCoOp / c_imagenet,target_avg,38.0000,,4/4," in lines
    with pytest.raises(R.NoResultsError, match="expected train/ and test/"):
        R.collect_transfer(str(tmp_path / "dg" / "test"), "dg")


def test_shots_folder_names_are_strict():
    from dasslite.results.cells import shots_number as _shots_number

    assert _shots_number("shots_16") == 16 and _shots_number("shots_1") == 1
    assert _shots_number("shots_16_8.0") == float("inf") and _shots_number("shots_x") == float("inf")


# ------------------------------------------------------------------------------------------------------------
# which folders and records count in a table
# ------------------------------------------------------------------------------------------------------------
def test_only_seed_folders_are_runs_others_are_listed_as_ignored(tmp_path, capsys):
    for seed in (1, 2, 3):
        write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed), None, record(80.0 + seed, "base", seed))
        write_run(b2n_dir(tmp_path, "test_new", "eurosat", seed), None, record(60.0 + seed, "new", seed))
    old = b2n_dir(tmp_path, "train_base", "eurosat", 1).parent / "seed1_old"  # a copy kept aside by hand
    write_run(old, None, record(10.0, "base", 1))
    write_run(old.parent / "backup", train_log(20.0))
    (table,) = R.collect_base2new(str(tmp_path))
    (row,) = table.rows
    assert (row.base.n, row.new.n) == (3, 3) and row.base.mean == pytest.approx(82.0)
    assert R.table_rows(table)[0][4] == "3"  # not 5/3
    assert row.base.ignored == [str(old.parent / "backup"), str(old)] and row.missing == []
    text = R.format_base2new([table])
    assert "Ignored folders (not seed<N> runs, not averaged): 2" in text and f"  {old}" in text
    # the same with --seeds, and in the few-shot / transfer tables
    (table,) = R.collect_base2new(str(tmp_path), seeds=[1, 2])
    assert table.rows[0].base.n == 2 and table.rows[0].base.ignored == [str(old.parent / "backup"), str(old)]
    for seed in (1, 2):
        write_run(fs_dir(tmp_path, "eurosat", 4, seed), None, fs_record(50.0 + seed, 4, seed))
    write_run(fs_dir(tmp_path, "eurosat", 4, 1).parent / "seed2_crashed", None, fs_record(0.0, 4, 2))
    (fs,) = R.collect_fewshot(str(tmp_path))
    assert fs.rows[0].cells["shots_4"].n == 2 and fs.rows[0].cells["shots_4"].mean == pytest.approx(51.5)
    assert "seed2_crashed" in R.format_grids([fs]) and "Ignored folders" in R.format_grids([fs])
    assert R.main(["base2new", str(tmp_path)]) == 0
    assert "Ignored folders" in capsys.readouterr().out


def test_eval_only_runs_do_not_count_as_a_trained_trainer_s_results(tmp_path):
    # seed 3's "training" is a zero-shot evaluation written into CoOp's training folder (results.json or a log)
    for seed in (1, 2):
        write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed), None,
                  record(80.0 + seed, "base", seed, eval_only=False))
        write_run(b2n_dir(tmp_path, "test_new", "eurosat", seed), None,
                  record(60.0 + seed, "new", seed, eval_only=True, model_dir="x/train_base/seed"))
    write_run(b2n_dir(tmp_path, "train_base", "eurosat", 3), None, record(50.0, "base", 3, eval_only=True))
    write_run(b2n_dir(tmp_path, "train_base", "eurosat", 4), eval_log(51.0))
    write_run(b2n_dir(tmp_path, "test_new", "eurosat", 3), None,
              record(40.0, "new", 3, eval_only=True, model_dir=""))  # evaluated no model
    (table,) = R.collect_base2new(str(tmp_path))
    (row,) = table.rows
    assert (row.base.n, row.new.n) == (2, 2) and row.base.mean == pytest.approx(81.5)
    problems = {r.label: r.problem for r in row.base.missing}
    assert "evaluation-only run" in problems["seed3"] and "evaluation-only run" in problems["seed4"]
    assert "evaluated no trained model" in [r.problem for r in row.new.missing][0]
    # the sweep's --zero-shot folder of CoOp is a table of its own, zero-shot records count there, no paper row
    for seed in (1, 2):
        for split, sub, acc in (("train_base", "base", 70.0), ("test_new", "new", 72.0)):
            write_run(b2n_dir(tmp_path, split, "eurosat", seed, cfg="vit_b16_ctxv1_zeroshot"), None,
                      record(acc, sub, seed, eval_only=True, model_dir=""))
    tables = R.collect_base2new(str(tmp_path))
    assert [t.cfg for t in tables] == ["vit_b16_ctxv1", "vit_b16_ctxv1_zeroshot"]
    zs = tables[1]
    assert (zs.rows[0].base.n, zs.rows[0].new.n) == (2, 2) and zs.rows[0].base.mean == pytest.approx(70.0)
    paper = R.load_paper()
    assert R.table_rows(zs, paper)[0][5:] == ["", "", ""]
    assert "has no row for CoOp evaluated zero-shot" in R.format_base2new([zs], paper=paper)
    assert R.table_rows(tables[0], paper)[0][5:] == ["91.54", "54.44", "68.15"]  # the trained one keeps CoOp's


def test_transfer_and_fewshot_trained_cells_refuse_zero_shot_records(tmp_path):
    make_transfer_tree(tmp_path, "xd", ["dtd"])
    write_run(tr_dir(tmp_path, "xd", "test", "dtd", 3), None,
              record(99.0, "all", 3, num_shots=16, model_dir="", eval_only=True))
    write_run(tr_dir(tmp_path, "xd", "train", "imagenet", 3), None,
              record(98.0, "all", 3, num_shots=16, model_dir="", eval_only=True))
    (table,) = R.collect_transfer(str(tmp_path), "xd")
    assert R.grid_rows(table)[0] == ["CoOp / vit_b16_ctxv1", "61.50 ± 0.50", "53.00 ± 1.00", "53.00", "2"]
    text = R.format_grids([table])
    assert "evaluated no trained model" in text and "evaluation-only run" in text
    write_run(fs_dir(tmp_path, "dtd", 2, 1), None, fs_record(40.0, 2, 1))
    write_run(fs_dir(tmp_path, "dtd", 2, 2), None, {**fs_record(90.0, 2, 2), "eval_only": True})
    (fs,) = R.collect_fewshot(str(tmp_path))
    assert fs.rows[0].cells["shots_2"].n == 1 and fs.rows[0].cells["shots_2"].mean == pytest.approx(40.0)


def test_zeroshot_clip2_is_not_the_papers_clip():
    paper = R.load_paper()
    assert R.paper_method(paper, "ZeroshotCLIP2") is None and R.paper_method(paper, "ZeroshotCLIP") == "CLIP"


def test_cli_seeds_accept_commas_and_spaces(tmp_path, capsys):
    for seed in (1, 2, 3):
        write_run(b2n_dir(tmp_path, "train_base", "eurosat", seed), None, record(80.0 + seed, "base", seed))
        write_run(b2n_dir(tmp_path, "test_new", "eurosat", seed), None, record(60.0 + seed, "new", seed))
    for seeds in (["1,2"], ["1", "2"], ["1 2"], ["1,", "2"]):
        assert R.main(["base2new", str(tmp_path), "--seeds", *seeds]) == 0, seeds
        assert "| eurosat   | 81.50 ± 0.50 | 61.50 ± 0.50 |" in capsys.readouterr().out
    assert R.parse_seeds(["3,1", "1"]) == [3, 1]
    with pytest.raises(SystemExit):
        R.main(["base2new", str(tmp_path), "--seeds", "1,x"])
    assert "not a seed: 'x'" in capsys.readouterr().err


def test_table_tools_do_not_import_torch():
    """The results and expert-usage CLIs read JSON and write tables: importing them (and the sweep, which prints the
    tables) must not pull in torch, nor scikit-learn (the open-set metrics import it when they compute)."""
    import subprocess
    import sys

    code = ("import sys, dasslite.results, dasslite.sweep, dasslite.analysis.expert_usage, dasslite.utils.io; "
            "from dasslite.utils import Registry; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
