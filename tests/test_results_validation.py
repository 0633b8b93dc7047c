"""The results tool averages only records that are valid percentages and belong to their folder; the rejected ones
are listed with the reason, never silently replaced by the log's rounded number."""
import json
import re

import pytest

from dasslite import results as R


def write_run(path, record, log_acc=50.0):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(record))
    (path / "log.txt").write_text(f"Finish training\n=> result\n* accuracy: {log_acc:.1f}%\n")
    return str(path)


def good(acc=80.0, seed=1, **kw):
    return {"complete": True, "accuracy": acc, "total": 1000, "correct": round(acc * 10), "trainer": "CoOp",
            "subsample_classes": "base", "num_shots": 16, "seed": seed, **kw}


def run_dir(root, seed=1, trainer="CoOp", shots=16):
    return root / "base2new" / "train_base" / "eurosat" / f"shots_{shots}" / trainer / "c" / f"seed{seed}"


@pytest.mark.parametrize("record,reason", [
    (good(accuracy=130.0, correct=1000), r"accuracy=130\.0 is outside \[0, 100\]"),
    (good(accuracy=0.8), r"accuracy=0\.8 disagrees with correct/total = 800/1000 = 80\.00%"),
    (good(accuracy=float("nan")), r"accuracy=nan is not finite"),
    (good(accuracy="80.0"), r"accuracy='80\.0' is not a number"),
    (good(trainer="KgCoOp"), r"trainer='KgCoOp' but the folder is CoOp"),
    (good(seed=2), r"seed=2 but the folder is seed1"),
    (good(num_shots=4), r"num_shots=4 but the folder is shots_16"),
])
def test_invalid_record_is_rejected_with_its_reason(tmp_path, record, reason):
    run = R.read_run(write_run(run_dir(tmp_path), record))
    assert run.value is None and re.search(reason, run.problem), run.problem


def test_table_averages_only_valid_records_and_lists_the_rejected(tmp_path):
    write_run(run_dir(tmp_path, 1), good(80.0, 1))
    write_run(run_dir(tmp_path, 2), good(84.0, 2))
    write_run(run_dir(tmp_path, 3), good(0.9, 3, correct=900))  # a fraction: would pull the mean to 55
    (table,) = R.collect_base2new(str(tmp_path), seeds=[1, 2, 3])
    (row,) = table.rows
    assert row.base.mean == pytest.approx(82.0) and row.base.n == 2
    text = R.format_base2new([table])
    assert "seed3: results.json has accuracy=0.9 disagrees with correct/total" in text

