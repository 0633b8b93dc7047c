"""dasslite.results on synthetic output trees: log parsing (CoOp / ProGrad), results.json, missing runs, tables."""
import json
import math
import os
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
            "total": 100, "correct": int(acc), "trainer": "CoOp", "subsample_classes": sub, "seed": seed,
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
