"""A split whose classes, labels or lists disagree is an error naming the split file and the class, never a
silently different protocol (base/new shift, test images dropped, a bare IndexError)."""
import json
import os.path as osp
import random

import pytest

import datasets  # noqa: F401  (registers the readers)
from dasslite.compat import BACKEND, build_dataset
from dasslite.config import get_cfg_default
from tests import dataset_fixtures as fx

pytestmark = pytest.mark.skipif(BACKEND == "dassl", reason="checks the built-in pipeline")


def build(root, shots=-1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), "EuroSAT", shots, 1
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    random.seed(1)
    return build_dataset(cfg)


def edit_split(dataset_dir, edit):
    path = osp.join(dataset_dir, "split_zhou_EuroSAT.json")
    with open(path) as f:
        split = json.load(f)
    edit(split)
    fx.write_split_json(path, split)


def test_class_missing_from_train_is_an_error_not_a_shifted_protocol(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    edit_split(dataset_dir, lambda s: s.update(train=[e for e in s["train"] if e[1] != 3]))
    with pytest.raises(ValueError, match=r"split_zhou_EuroSAT\.json: label 3 \('Highway or Road'\) has no train "
                                         r"images.*add images for it or remove the class"):
        build(tmp_path, subsample="base")


def test_label_out_of_range_names_the_label(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))

    def relabel(s):
        for e in s["train"] + s["val"] + s["test"]:
            if e[1] == 9:
                e[1] = 12
    edit_split(dataset_dir, relabel)
    with pytest.raises(ValueError, match=r"labels must be 0\.\.9 .* label 12 \('Sea or Lake'\) is out of that range"):
        build(tmp_path)


def test_label_with_two_names_and_name_with_two_labels(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    edit_split(dataset_dir, lambda s: s["test"][0].__setitem__(2, "Farmland"))
    with pytest.raises(ValueError, match=r"label 0 \('Annual Crop Land', 'Farmland'\) has more than one class name"):
        build(tmp_path)
    dataset_dir = fx.make_eurosat_tree(str(tmp_path / "b"))
    edit_split(dataset_dir, lambda s: [e.__setitem__(2, "Forest") for e in s["train"] + s["val"] + s["test"]
                                       if e[1] == 0])
    with pytest.raises(ValueError, match=r"class name 'Forest' is used by labels \[0, 1\]"):
        build(tmp_path / "b")


def test_image_in_train_and_test_is_an_error(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    edit_split(dataset_dir, lambda s: s["train"].append(list(s["test"][5])))
    with pytest.raises(ValueError, match=r"image .*HerbaceousVegetation_8\.jpg is in both the train and the test list"):
        build(tmp_path)


def test_class_missing_from_val_warns(tmp_path, capsys):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    edit_split(dataset_dir, lambda s: s.update(val=[e for e in s["val"] if e[1] != 2]))
    assert build(tmp_path).num_classes == 10
    assert "WARNING: split" in capsys.readouterr().out
