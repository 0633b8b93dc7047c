"""dasslite.analysis.expert_usage: hand-computed counts and weights, validation, files, per-dataset aggregation."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dasslite.analysis.expert_usage import (ExpertUsage, NoUsageError, UsageFileError, find_usage_files, main,
                                            summarize_runs)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["cat", "dog", "fox"]
EXPERTS = ["e0", "e1", "e2", "e3"]

# 5 images, 3 classes, 4 experts, k = 2 (the weights of an image sum to 1)
LABELS = np.array([0, 0, 1, 2, 1])
INDEX = np.array([[0, 1], [1, 2], [3, 0], [2, 3], [3, 1]])
WEIGHT = np.array([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1], [0.5, 0.5], [0.8, 0.2]])
# by hand
COUNTS = [[1, 2, 1, 0],   # cat: images 1, 2
          [1, 1, 0, 2],   # dog: images 3, 5
          [0, 0, 1, 1]]   # fox: image 4
WEIGHTS = [[0.7, 0.9, 0.4, 0.0],
           [0.1, 0.2, 0.0, 1.7],
           [0.0, 0.0, 0.5, 0.5]]
IMAGES = [2, 2, 1]


def hand_usage():
    usage = ExpertUsage(CLASSES, EXPERTS)
    usage.update(LABELS, INDEX, WEIGHT)
    return usage


def test_counts_weights_and_summaries_by_hand():
    usage = hand_usage()
    assert usage.counts.dtype == np.int64 and usage.weights.dtype == np.float64
    assert usage.counts.tolist() == COUNTS
    np.testing.assert_allclose(usage.weights, WEIGHTS)
    assert usage.images.tolist() == IMAGES and usage.top_k == 2
    np.testing.assert_allclose(usage.selection_rate(), [[0.5, 1, 0.5, 0], [0.5, 0.5, 0, 1], [0, 0, 1, 1]])
    np.testing.assert_allclose(usage.mean_weight(), [[0.35, 0.45, 0.2, 0], [0.05, 0.1, 0, 0.85], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(usage.selection_rate().sum(1), 2.0)  # k
    np.testing.assert_allclose(usage.mean_weight().sum(1), 1.0)
    np.testing.assert_allclose(usage.dataset_share(), [0.2, 0.3, 0.2, 0.3])  # 2, 3, 2, 3 of 10 selections
    np.testing.assert_allclose(usage.dataset_mean_weight(), [0.8 / 5, 1.1 / 5, 0.9 / 5, 2.2 / 5])
    assert usage.top_expert_per_class() == ["e1", "e3", "e2"]  # fox: e2/e3 tie -> lower index


def test_torch_tensors_in_batches_with_grad_and_bf16():
    torch = pytest.importorskip("torch")
    usage = ExpertUsage(CLASSES, EXPERTS)
    weight = torch.tensor(WEIGHT, dtype=torch.float32, requires_grad=True)
    for lo, hi in ((0, 2), (2, 5)):
        usage.update(torch.tensor(LABELS[lo:hi]), torch.tensor(INDEX[lo:hi]), weight[lo:hi])
    assert usage.counts.tolist() == COUNTS
    np.testing.assert_allclose(usage.weights, WEIGHTS, atol=1e-6)
    usage.update(torch.tensor([0]), torch.tensor([[3, 2]]), torch.tensor([[0.75, 0.25]], dtype=torch.bfloat16))
    assert usage.counts[0].tolist() == [1, 2, 2, 1] and usage.images.tolist() == [3, 2, 1]
    np.testing.assert_allclose(usage.weights[0], [0.7, 0.9, 0.65, 0.75])


def test_top1_router_accepts_flat_index():
    usage = ExpertUsage(["a", "b"], ["x", "y", "z"])
    usage.update([0, 1, 1], [2, 0, 2], [1.0, 1.0, 1.0])
    assert usage.top_k == 1 and usage.counts.tolist() == [[0, 0, 1], [1, 0, 1]]


def test_merge_equals_one_update_with_the_concatenated_batch():
    a, b = ExpertUsage(CLASSES, EXPERTS), ExpertUsage(CLASSES, EXPERTS)
    a.update(LABELS[:2], INDEX[:2], WEIGHT[:2])
    b.update(LABELS[2:], INDEX[2:], WEIGHT[2:])
    merged, whole = a.merge(b), hand_usage()
    assert merged is a
    assert merged.counts.tolist() == whole.counts.tolist() and merged.images.tolist() == whole.images.tolist()
    np.testing.assert_allclose(merged.weights, whole.weights)
    assert merged.top_k == 2


def test_merge_joins_class_lists_by_name_and_refuses_other_experts():
    base = ExpertUsage(["cat", "dog"], EXPERTS)
    base.update([0], [[0, 1]], [[0.5, 0.5]])
    new = ExpertUsage(["fox", "cat"], EXPERTS)
    new.update([0, 1], [[2, 3], [0, 2]], [[0.4, 0.6], [0.9, 0.1]])
    base.merge(new)
    assert base.classnames == ["cat", "dog", "fox"]
    assert base.counts.tolist() == [[2, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1]]
    assert base.images.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="different experts"):
        base.merge(ExpertUsage(CLASSES, ["e0", "e1", "e2"]))
    k1 = ExpertUsage(CLASSES, EXPERTS)
    k1.update([0], [[1]], [[1.0]])
    with pytest.raises(ValueError, match="top_k=2 and top_k=1"):
        hand_usage().merge(k1)


@pytest.mark.parametrize("labels, index, weight, message", [
    ([0, 3], [[0, 1], [1, 2]], [[0.5, 0.5]] * 2, r"labels\[1\] = 3 is out of range for 3 classes"),
    ([0, -1], [[0, 1], [1, 2]], [[0.5, 0.5]] * 2, r"labels\[1\] = -1 is out of range"),
    ([0, 1], [[0, 1], [1, 4]], [[0.5, 0.5]] * 2, r"expert_index\[1, 1\] = 4 is out of range for 4 experts"),
    ([0, 1, 2], [[0, 1], [1, 2]], [[0.5, 0.5]] * 2, r"expert_index has 2 rows but labels has 3"),
    ([0, 1], [[0, 1], [1, 2]], [[0.5, 0.5, 0.0]] * 2, r"expert_weight must have the shape .*\[2, 2\].*\[2, 3\]"),
    ([[0, 1]], [[0, 1]], [[0.5, 0.5]], r"labels must have shape \[B\], got \[1, 2\]"),
    ([0], [[0, 1, 2, 3, 0]], [[0.2] * 5], r"top-k must be between 1 and the 4 experts"),
    ([0], [[2, 2]], [[0.5, 0.5]], r"selects an expert twice"),
    ([0], [[0, 1]], [[float("nan"), 0.5]], r"finite and >= 0"),
    ([0], [[0, 1]], [[1.5, -0.5]], r"finite and >= 0"),
])
def test_bad_batches_raise_clearly_and_change_nothing(labels, index, weight, message):
    usage = hand_usage()
    with pytest.raises(ValueError, match=message):
        usage.update(np.array(labels), np.array(index), np.array(weight))
    assert usage.counts.tolist() == COUNTS and usage.images.tolist() == IMAGES


def test_other_misuse():
    usage = hand_usage()
    with pytest.raises(ValueError, match="k=1 selected experts per image, earlier batches had k=2"):
        usage.update([0], [[1]], [[1.0]])
    with pytest.raises(TypeError, match="labels must hold integer indices"):
        usage.update(np.array([0.0]), [[0, 1]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="unique"):
        ExpertUsage(CLASSES, ["a", "a"])
    usage.update(np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros((0, 2)))  # empty batch: no-op
    assert usage.counts.tolist() == COUNTS


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_write_json_csv_png_and_round_trip(tmp_path):
    usage = hand_usage()
    paths = usage.write(str(tmp_path / "run"), dataset="eurosat", extra={"seed": 1})
    assert paths == [str(tmp_path / "run" / f"expert_usage.{ext}") for ext in ("json", "csv", "png")]
    assert sorted(os.listdir(tmp_path / "run")) == ["expert_usage.csv", "expert_usage.json", "expert_usage.png"]

    with open(paths[0], encoding="utf-8") as f:
        record = json.load(f)
    assert record["dataset"] == "eurosat" and record["extra"] == {"seed": 1} and record["top_k"] == 2
    assert record["summary"]["dataset_share"] == pytest.approx([0.2, 0.3, 0.2, 0.3])
    assert record["summary"]["top_expert_per_class"] == ["e1", "e3", "e2"]
    back = ExpertUsage.from_dict(record)
    assert back.classnames == CLASSES and back.expert_names == EXPERTS and back.top_k == 2
    assert back.counts.tolist() == COUNTS and back.images.tolist() == IMAGES
    assert np.array_equal(back.weights, usage.weights)  # exact: JSON floats round-trip

    rows = read_csv(paths[1])
    assert rows[0] == ["class", "images", "count[e0]", "mean_weight[e0]", "count[e1]", "mean_weight[e1]",
                       "count[e2]", "mean_weight[e2]", "count[e3]", "mean_weight[e3]"]
    assert [r[0] for r in rows[1:]] == ["cat", "dog", "fox", "ALL"]
    assert rows[1][:4] == ["cat", "2", "1", "0.350000"] and rows[1][4:6] == ["2", "0.450000"]
    assert rows[4][:2] == ["ALL", "5"] and rows[4][2::2] == ["2", "3", "2", "3"]
    assert [float(x) for x in rows[4][3::2]] == pytest.approx([0.16, 0.22, 0.18, 0.44])

    with open(paths[2], "rb") as f:
        assert f.read(8) == PNG_MAGIC


def test_unseen_class_is_nan_null_and_blank(tmp_path):
    usage = ExpertUsage(["seen", "unseen"], ["a", "b"])
    usage.update([0], [[1, 0]], [[0.75, 0.25]])
    assert np.isnan(usage.selection_rate()[1]).all() and usage.top_expert_per_class() == ["b", None]
    paths = usage.write(str(tmp_path), prefix="usage", plot=False)
    assert [os.path.basename(p) for p in paths] == ["usage.json", "usage.csv"]
    with open(paths[0], encoding="utf-8") as f:
        record = json.load(f)  # strict JSON: no NaN
    assert record["summary"]["mean_weight"] == [[0.25, 0.75], [None, None]] and record["dataset"] is None
    assert read_csv(paths[1])[2] == ["unseen", "0", "0", "", "0", ""]


def test_failed_write_leaves_old_files_alone(tmp_path):
    hand_usage().write(str(tmp_path), plot=False)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with pytest.raises(TypeError):
        ExpertUsage(CLASSES, EXPERTS).write(str(tmp_path), extra={"bad": object()}, plot=False)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_heatmap_with_many_classes_drops_labels(tmp_path):
    names = [f"class_{i}" for i in range(80)]
    usage = ExpertUsage(names, ["a", "b", "c"])
    rng = np.random.default_rng(0)
    usage.update(np.arange(80), rng.integers(0, 3, size=(80, 1)), np.ones((80, 1)))
    with open(usage.write(str(tmp_path))[2], "rb") as f:
        assert f.read(8) == PNG_MAGIC


# ------------------------------------------------------------------------------------------------------------
# per-dataset aggregation and the CLI
# ------------------------------------------------------------------------------------------------------------
def make_tree(root):
    """eurosat seed1 (the hand case, with a dataset field) + seed2 (no field: named by folder); dtd seed1."""
    hand_usage().write(str(root / "eurosat" / "seed1"), dataset="eurosat", plot=False)
    seed2 = ExpertUsage(CLASSES, EXPERTS)
    seed2.update([0, 0], [[0, 1], [0, 1]], [[0.5, 0.5], [0.5, 0.5]])
    seed2.write(str(root / "eurosat" / "seed2"), plot=False)
    dtd = ExpertUsage(["banded", "woven"], ["plain", "texture", "pattern"])
    dtd.update([0, 0, 1, 1], [0, 0, 2, 1], [1.0, 1.0, 1.0, 1.0])
    dtd.write(str(root / "dtd" / "seed1"), dataset="dtd", plot=False)


def test_summarize_runs_merges_seeds_per_dataset(tmp_path):
    make_tree(tmp_path)
    rows = summarize_runs([str(tmp_path)])
    assert [r.label for r in rows] == ["dtd", "eurosat"]  # the papers' order
    dtd, eurosat = rows
    assert eurosat.runs == 2 and eurosat.usage.total_images == 7 and eurosat.usage.top_k == 2
    # selections: e0 2+2, e1 3+2, e2 2, e3 3 -> of 14
    np.testing.assert_allclose(eurosat.share, [4 / 14, 5 / 14, 2 / 14, 3 / 14])
    assert dtd.runs == 1 and dtd.usage.top_k == 1
    np.testing.assert_allclose(dtd.share, [0.5, 0.25, 0.25])
    # a run folder passed directly (seed folder) is named after its parent; duplicates are read once
    rows = summarize_runs([str(tmp_path / "eurosat" / "seed2"), str(tmp_path / "eurosat")])
    assert [(r.label, r.runs) for r in rows] == [("eurosat", 2)]


def test_cli_table_and_files(tmp_path, capsys):
    make_tree(tmp_path / "out")
    assert main([str(tmp_path / "out"), "--out", str(tmp_path / "summary")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["dataset", "runs", "images", "k",
                                                                   "#0", "#1", "#2", "#3"]
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["dtd", "1", "4", "1",
                                                                   "50.0%", "25.0%", "25.0%", ""]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["eurosat", "2", "7", "2",
                                                                   "28.6%", "35.7%", "14.3%", "21.4%"]
    assert "  dtd\n    #0: plain\n    #1: texture\n    #2: pattern\n" in out  # the legend: expert sets differ

    rows = read_csv(tmp_path / "summary" / "expert_usage_datasets.csv")
    assert rows[0] == ["dataset", "runs", "images", "top_k", "expert_index", "expert", "selections", "share",
                       "mean_weight"]
    assert [r[0] for r in rows[1:]] == ["dtd"] * 3 + ["eurosat"] * 4
    assert rows[3][4:7] == ["2", "pattern", "1"] and float(rows[3][7]) == pytest.approx(0.25)
    assert rows[5][4:7] == ["1", "e1", "5"] and float(rows[5][7]) == pytest.approx(5 / 14)
    assert float(rows[5][8]) == pytest.approx((0.3 + 0.6 + 0.2 + 0.5 + 0.5) / 7)
    with open(tmp_path / "summary" / "expert_usage_datasets.png", "rb") as f:
        assert f.read(8) == PNG_MAGIC


def test_cli_errors_name_the_path(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1
    assert f"no expert_usage.json under {empty}" in capsys.readouterr().err
    with pytest.raises(NoUsageError, match="no such file or folder"):
        find_usage_files(str(tmp_path / "missing"))

    bad = tmp_path / "bad" / "seed1" / "expert_usage.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"classnames": ["a"], "expert_names": ["x"], "counts": [[1]]}))
    assert main([str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "missing key(s) weights, images" in err
    with pytest.raises(UsageFileError, match="shape"):
        bad.write_text(json.dumps({"classnames": ["a"], "expert_names": ["x"], "counts": [[1, 2]],
                                   "weights": [[1.0]], "images": [1]}))
        summarize_runs(str(bad))


def test_module_runs_as_script(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "dasslite.analysis.expert_usage", str(empty)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: no expert_usage.json under {empty}"  # no RuntimeWarning, no traceback
