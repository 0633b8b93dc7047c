"""Dataset readers on tiny trees in the real layouts, the shared split / few-shot / subsample pipeline, and errors."""
import importlib.util
import json
import os
import os.path as osp
import pickle
import random
import sys
import types

import pytest

import datasets  # noqa: F401  (registers the readers)
from dasslite.config import get_cfg_default
from dasslite.compat import DATASET_REGISTRY, build_dataset  # whichever engine the readers registered into
from dasslite.data.datasets import DatasetBase, Datum, read_image
from dasslite.data.datasets.datum_pickle import SOURCE_KEY, load_datum_file
from dasslite.data.datasets.fewshot import fewshot_cache_path, subsample_classes
from dasslite.data.datasets.splits import read_and_split_data, read_split, save_split, split_trainval
from tests import dataset_fixtures as fx
from dasslite.compat import BACKEND

pytestmark = pytest.mark.skipif(BACKEND == "dassl", reason="these tests compare our Datum objects by value; under "
                                "real Dassl the readers are exercised by test_trainers.py and test_real_dassl.py")


def make_cfg(root, name, shots=-1, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.VERBOSE = False
    return cfg


def build(root, name, shots=-1, seed=1, subsample="all"):
    """What train.py does: seed python ``random``, then build the dataset named in the config."""
    random.seed(seed)
    return build_dataset(make_cfg(root, name, shots, seed, subsample))


def keys(items):
    return [(osp.basename(x.impath), x.label, x.classname) for x in items]


# reader name, fixture builder, class names in label order, (train, val, test) sizes, split file (None: none)
READERS = [
    ("EuroSAT", fx.make_eurosat_tree, fx.EUROSAT_CLASSNAMES, (40, 20, 20), "split_zhou_EuroSAT.json"),
    ("DescribableTextures", fx.make_dtd_tree, fx.DTD_CLASSNAMES, (15, 6, 9), "split_zhou_DescribableTextures.json"),
    ("Food101", fx.make_food101_tree, fx.FOOD101_CLASSNAMES, (15, 6, 9), "split_zhou_Food101.json"),
    ("Caltech101", fx.make_caltech101_tree, fx.CALTECH101_CLASSNAMES, (25, 10, 15), "split_zhou_Caltech101.json"),
    ("OxfordPets", fx.make_oxford_pets_tree, fx.PETS_CLASSNAMES, (24, 6, 9), "split_zhou_OxfordPets.json"),
    ("OxfordFlowers", fx.make_oxford_flowers_tree, fx.FLOWERS_CLASSNAMES, (15, 6, 9), "split_zhou_OxfordFlowers.json"),
    ("StanfordCars", fx.make_stanford_cars_tree, fx.CARS_CLASSNAMES, (24, 6, 9), "split_zhou_StanfordCars.json"),
    ("FGVCAircraft", fx.make_fgvc_aircraft_tree, fx.AIRCRAFT_VARIANTS, (9, 6, 6), None),
    ("SUN397", fx.make_sun397_tree, fx.SUN397_CLASSNAMES, (24, 6, 9), "split_zhou_SUN397.json"),
    ("UCF101", fx.make_ucf101_tree, fx.UCF101_CLASSNAMES, (24, 6, 9), "split_zhou_UCF101.json"),
]
IMAGENET_NAMES = [n for _, n in fx.IMAGENET_CLASSES[:3]]
TEST_ONLY = [
    ("ImageNetV2", fx.make_imagenetv2_tree, IMAGENET_NAMES, 6),
    ("ImageNetSketch", fx.make_imagenet_sketch_tree, IMAGENET_NAMES, 6),
    ("ImageNetA", fx.make_imagenet_a_tree, fx.IMAGENET_SUBSET_CLASSNAMES, 6),
    ("ImageNetR", fx.make_imagenet_r_tree, fx.IMAGENET_SUBSET_CLASSNAMES, 6),
]


def check_consistent(ds, dataset_dir):
    for items in (ds.train_x, ds.val or [], ds.test):
        for x in items:
            assert ds.lab2cname[x.label] == x.classname
            assert x.impath.startswith(dataset_dir + os.sep) and osp.isfile(x.impath)


# -- readers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make,classnames,sizes,split_file", READERS, ids=[r[0] for r in READERS])
def test_reader_classnames_labels_sizes_and_split_file(tmp_path, name, make, classnames, sizes, split_file):
    dataset_dir = make(str(tmp_path))
    ds = build(tmp_path, name)
    assert ds.classnames == classnames and ds.num_classes == len(classnames)
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == sizes
    assert {x.label for x in ds.test} == set(range(len(classnames)))
    check_consistent(ds, dataset_dir)
    if split_file:
        path = osp.join(dataset_dir, split_file)
        text = open(path).read()
        split = json.loads(text)
        assert text.startswith('{\n    "train": [\n        [\n            "')
        assert [len(split[k]) for k in ("train", "val", "test")] == list(sizes)
        rel, label, cname = split["train"][0]
        assert not osp.isabs(rel) and cname == classnames[label]
        again = build(tmp_path, name)  # the split file is read back identically
        assert keys(again.train_x) == keys(ds.train_x) and keys(again.test) == keys(ds.test)


@pytest.mark.parametrize("name,make,classnames,n", TEST_ONLY, ids=[r[0] for r in TEST_ONLY])
def test_test_only_variants(tmp_path, name, make, classnames, n):
    dataset_dir = make(str(tmp_path))
    ds = build(tmp_path, name, shots=4, subsample="base")  # few-shot and subsample do not apply
    assert ds.classnames == classnames and ds.num_classes == len(classnames)
    assert ds.train_x is ds.test and len(ds.test) == n and ds.val is None
    check_consistent(ds, dataset_dir)
    assert not osp.exists(osp.join(dataset_dir, "split_fewshot"))


def test_imagenet_reader_caches_lists_and_uses_val_as_test(tmp_path):
    dataset_dir = fx.make_imagenet_tree(str(tmp_path))
    ds = build(tmp_path, "ImageNet")
    assert ds.classnames == IMAGENET_NAMES and len(ds.train_x) == 18 and len(ds.test) == 6 and ds.val is ds.test
    assert all("/images/val/" in x.impath for x in ds.test)
    assert osp.isfile(osp.join(dataset_dir, "preprocessed.pkl"))
    fx.write_image(osp.join(dataset_dir, "images", "train", "n09999999", "x.JPEG"))  # cached lists win
    few = build(tmp_path, "ImageNet", shots=2, subsample="new")
    assert few.classnames == ["great white shark"] and len(few.train_x) == 2 and few.val is few.test
    assert set(load_datum_file(fewshot_cache_path(dataset_dir, 2, 1))) == {"train", SOURCE_KEY}


def test_imagenet_stale_preprocessed_pickle_is_named(tmp_path):
    fx.make_imagenet_tree(str(tmp_path / "a"))
    build(tmp_path / "a", "ImageNet")
    os.rename(tmp_path / "a", tmp_path / "b")
    with pytest.raises(FileNotFoundError, match=r"preprocessed\.pkl.*no longer exists.*Delete"):
        build(tmp_path / "b", "ImageNet")


def test_eurosat_generated_split_stores_fixed_names(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path), n_per_class=10, write_split=False)
    ds = build(tmp_path, "EuroSAT")
    assert ds.classnames == fx.EUROSAT_CLASSNAMES and (len(ds.train_x), len(ds.val), len(ds.test)) == (50, 20, 30)
    split = json.load(open(osp.join(dataset_dir, "split_zhou_EuroSAT.json")))
    assert split["train"][0][2] == "Annual Crop Land" and split["train"][0][0].startswith("AnnualCrop/")


def test_generated_split_depends_only_on_the_seed(tmp_path):
    fx.make_dtd_tree(str(tmp_path / "a"))
    fx.make_dtd_tree(str(tmp_path / "b"))
    fx.make_dtd_tree(str(tmp_path / "c"))
    a, b, c = build(tmp_path / "a", "DescribableTextures"), build(tmp_path / "b", "DescribableTextures"), \
        build(tmp_path / "c", "DescribableTextures", seed=2)
    assert keys(a.train_x) == keys(b.train_x) and keys(a.test) == keys(b.test)
    assert keys(a.train_x) != keys(c.train_x)


# -- few-shot ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make", [(r[0], r[1]) for r in READERS] + [("ImageNet", fx.make_imagenet_tree)],
                         ids=[r[0] for r in READERS] + ["ImageNet"])
def test_fewshot_is_seeded_cached_and_reused(tmp_path, name, make):
    dataset_dir = make(str(tmp_path))
    build(tmp_path, name)  # writes the split file, if the dataset has one
    first = build(tmp_path, name, shots=2, seed=1)
    counts = {}
    for x in first.train_x:
        counts[x.label] = counts.get(x.label, 0) + 1
    assert counts == {y: 2 for y in range(first.num_classes)}
    pkl = fewshot_cache_path(dataset_dir, 2, 1)
    assert pkl == osp.join(dataset_dir, "split_fewshot", "shot_2-seed_1.pkl") and osp.isfile(pkl)
    random.seed(12345)  # the cache, not the random state, decides the second time
    cached = build_dataset(make_cfg(tmp_path, name, shots=2, seed=1))
    assert cached.train_x == first.train_x and cached.val == first.val
    os.remove(pkl)
    assert build(tmp_path, name, shots=2, seed=1).train_x == first.train_x  # same seed, same draw
    assert keys(build(tmp_path, name, shots=2, seed=2).train_x) != keys(first.train_x)


def test_val_gets_min_k_4_shots(tmp_path):
    fx.make_eurosat_tree(str(tmp_path), n_per_class=20)  # 10 train / 4 val / 6 test per class
    for shots, val_shots in ((2, 2), (8, 4)):
        ds = build(tmp_path, "EuroSAT", shots=shots)
        assert len(ds.train_x) == 10 * shots and len(ds.val) == 10 * val_shots and len(ds.test) == 60


def test_small_val_class_keeps_all_its_images(tmp_path):
    fx.make_eurosat_tree(str(tmp_path), n_per_class=8)  # 2 val images per class < min(4, 4)
    ds = build(tmp_path, "EuroSAT", shots=4)
    assert len(ds.train_x) == 40 and len(ds.val) == 20


def test_too_few_train_images_for_the_shots_names_the_class(tmp_path):
    fx.make_eurosat_tree(str(tmp_path), n_per_class=8)
    with pytest.raises(ValueError, match=r"5 shots: class label 0 \('Annual Crop Land'\) has only 4 image"):
        build(tmp_path, "EuroSAT", shots=5)
    assert not osp.exists(fewshot_cache_path(osp.join(str(tmp_path), "eurosat"), 5, 1))


def test_fewshot_cache_after_moving_data_is_rebased(tmp_path, capsys):
    fx.make_eurosat_tree(str(tmp_path / "a"))
    first = build(tmp_path / "a", "EuroSAT", shots=2)
    os.rename(tmp_path / "a", tmp_path / "b")
    random.seed(999)  # the cache, not the random state, decides
    moved = build_dataset(make_cfg(tmp_path / "b", "EuroSAT", shots=2, seed=1))
    assert "same sample is used from" in capsys.readouterr().out
    assert keys(moved.train_x) == keys(first.train_x)
    assert all(x.impath.startswith(str(tmp_path / "b")) for x in moved.train_x + moved.val)


def test_corrupt_or_foreign_fewshot_cache_is_named(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    pkl = fewshot_cache_path(dataset_dir, 2, 1)
    os.makedirs(osp.dirname(pkl))
    open(pkl, "wb").write(b"garbage")
    with pytest.raises(ValueError, match=r"shot_2-seed_1\.pkl cannot be read.*Delete"):
        build(tmp_path, "EuroSAT", shots=2)
    with open(pkl, "wb") as f:
        pickle.dump({"train": []}, f)
    with pytest.raises(ValueError, match=r"shot_2-seed_1\.pkl does not hold the keys \['train', 'val'\]"):
        build(tmp_path, "EuroSAT", shots=2)
    full = build(tmp_path, "EuroSAT")
    with open(pkl, "wb") as f:
        pickle.dump({"train": full.train_x[:4], "val": full.val[:2]}, f)
    rebuilt = build(tmp_path, "EuroSAT", shots=2)  # a sample of some classes only: drawn again, with a warning
    assert len(rebuilt.train_x) == 20 and {x.label for x in rebuilt.train_x} == set(range(10))


@pytest.mark.skipif(importlib.util.find_spec("dassl") is not None, reason="only meaningful without Dassl installed")
def test_cache_written_by_dassl_loads_without_it(tmp_path, monkeypatch):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    full = build(tmp_path, "EuroSAT")
    fake = types.ModuleType("dassl.data.datasets.base_dataset")

    class FakeDatum:  # the same instance layout as Dassl's Datum
        def __init__(self, d):
            self._impath, self._label, self._domain, self._classname = d.impath, d.label, d.domain, d.classname

    FakeDatum.__module__, FakeDatum.__qualname__, FakeDatum.__name__ = fake.__name__, "Datum", "Datum"
    fake.Datum = FakeDatum
    for parent in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    random.seed(1)
    train = DatasetBase.generate_fewshot_dataset(DatasetBase, full.train_x, num_shots=2)
    payload = {"train": [FakeDatum(d) for d in train], "val": [FakeDatum(d) for d in full.val]}
    pkl = fewshot_cache_path(dataset_dir, 2, 1)
    os.makedirs(osp.dirname(pkl))
    with open(pkl, "wb") as f:
        pickle.dump(payload, f)
    monkeypatch.undo()  # Dassl is "uninstalled" again
    ds = build_dataset(make_cfg(tmp_path, "EuroSAT", shots=2))
    assert type(ds.train_x[0]) is Datum and ds.train_x == train and ds.val == full.val


def _datum(tmp_path, label, i, classname=None):
    path = fx.write_image(str(tmp_path / f"c{label}_{i}.jpg"))
    return Datum(impath=path, label=label, classname=classname or f"class{label}")


def test_generate_fewshot_matches_random_sample_in_first_appearance_order(tmp_path):
    order = [2, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2]
    data = [_datum(tmp_path, y, i) for i, y in enumerate(order)]
    by_label = {2: [d for d in data if d.label == 2], 0: [d for d in data if d.label == 0],
                1: [d for d in data if d.label == 1]}  # first appearance: 2, then 0, then 1
    for seed in (0, 1, 7):
        random.seed(seed)
        expected = [d for y in (2, 0, 1) for d in random.sample(by_label[y], 3)]
        random.seed(seed)
        assert DatasetBase.generate_fewshot_dataset(DatasetBase, data, num_shots=3) == expected
    # Hand-checked for seed 0: label 2 sits at positions [0, 2, 5, 8, 11], label 0 at [1, 4, 7, 10], label 1 at
    # [3, 6, 9]; random.seed(0) then random.sample of each (2 shots, in that order) gives these positions.
    random.seed(0)
    picked = DatasetBase.generate_fewshot_dataset(DatasetBase, data, num_shots=2)
    assert [data.index(d) for d in picked] == [8, 11, 1, 4, 9, 6]


def test_generate_fewshot_short_class_repeat_and_passthrough(tmp_path):
    data = [_datum(tmp_path, 0, i, "cat") for i in range(3)] + [_datum(tmp_path, 1, i, "dog") for i in range(1)]
    base = DatasetBase(train_x=data)
    with pytest.raises(ValueError, match=r"2 shots: class label 1 \('dog'\) has only 1 image"):
        base.generate_fewshot_dataset(data, num_shots=2)
    random.seed(3)
    rep = base.generate_fewshot_dataset(data, num_shots=2, repeat=True)
    random.seed(3)
    assert rep == random.sample(data[:3], 2) + random.choices(data[3:], k=2)
    assert base.generate_fewshot_dataset(data, num_shots=-1) is data
    two = base.generate_fewshot_dataset(data[:3], data[:3], num_shots=1)
    assert isinstance(two, list) and len(two) == 2 and len(two[0]) == 1


# -- subsample -----------------------------------------------------------------------------------------------
def test_base_and_new_classes_eurosat(tmp_path):
    fx.make_eurosat_tree(str(tmp_path))
    base = build(tmp_path, "EuroSAT", shots=2, subsample="base")
    new = build(tmp_path, "EuroSAT", shots=2, subsample="new")
    assert base.classnames == fx.EUROSAT_CLASSNAMES[:5] and new.classnames == fx.EUROSAT_CLASSNAMES[5:]
    for ds in (base, new):
        assert ds.num_classes == 5 and len(ds.train_x) == 10 and len(ds.val) == 10 and len(ds.test) == 10
        assert {x.label for x in ds.test} == set(range(5))
    whole = build(tmp_path, "EuroSAT", shots=2)  # base and new share the one few-shot cache
    assert keys(base.train_x) == [(b, y, c) for b, y, c in keys(whole.train_x) if y < 5]
    assert keys(new.train_x) == [(b, y - 5, c) for b, y, c in keys(whole.train_x) if y >= 5]


def test_subsample_rule_uses_labels_of_the_first_list(tmp_path):
    train = [_datum(tmp_path, y, 0) for y in (4, 1, 7)]  # labels 1, 4, 7: base = {1, 4}, new = {7}
    test = [_datum(tmp_path, y, 1) for y in (1, 7, 9, 4)]
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [(x.label, x.classname) for x in base_train] == [(1, "class4"), (0, "class1")]
    assert [(x.label, x.classname) for x in base_test] == [(0, "class1"), (1, "class4")]
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(x.label, x.classname) for x in new_test] == [(0, "class7")]
    assert subsample_classes(train, subsample="all")[0] is train
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES.*'Base'"):
        subsample_classes(train, subsample="Base")


def test_odd_class_count_gives_base_the_larger_half(tmp_path):
    fx.make_dtd_tree(str(tmp_path))
    assert build(tmp_path, "DescribableTextures", subsample="base").classnames == ["banded", "braided"]
    assert build(tmp_path, "DescribableTextures", subsample="new").classnames == ["bubbly"]


# -- split helpers ---------------------------------------------------------------------------------------------
def test_save_and_read_split_round_trip(tmp_path):
    fx.make_dtd_tree(str(tmp_path))
    image_dir = str(tmp_path / "dtd" / "images")
    random.seed(0)
    train, val, test = read_and_split_data(image_dir)
    path = str(tmp_path / "split.json")
    save_split(train, val, test, path, image_dir)
    assert read_split(path, image_dir) == (train, val, test)
    assert json.load(open(path))["val"][0][0].count("/") == 1


def test_split_trainval_holds_out_a_fifth_per_class(tmp_path):
    trainval = [_datum(tmp_path, y, i) for i in range(10) for y in (0, 1)]
    random.seed(0)
    train, val = split_trainval(trainval)
    assert len(val) == 4 and len(train) == 16 and set(train).isdisjoint(val)
    assert [x.label for x in val] == [0, 0, 1, 1]
    random.seed(0)
    assert split_trainval(trainval) == (train, val)


def test_too_small_class_for_a_generated_split_is_named(tmp_path):
    fx.make_dtd_tree(str(tmp_path), n_per_class=2)
    with pytest.raises(ValueError, match=r"Class 0 \('banded'\).*2 image\(s\)"):
        build(tmp_path, "DescribableTextures")


# -- bad input -------------------------------------------------------------------------------------------------
def test_missing_root_dataset_and_image_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build(tmp_path / "nowhere", "EuroSAT")
    with pytest.raises(FileNotFoundError, match=r"EuroSAT dataset folder 'eurosat' not found: .*eurosat"):
        build(tmp_path, "EuroSAT")
    os.makedirs(tmp_path / "eurosat")
    with pytest.raises(FileNotFoundError, match=r"image folder '2750' not found"):
        build(tmp_path, "EuroSAT")


@pytest.mark.parametrize("content,pattern", [
    ("{not json", r"split_zhou_EuroSAT\.json is not valid JSON"),
    ("[]", r"split_zhou_EuroSAT\.json must hold a JSON object"),
    ('{"train": [], "val": []}', r"split_zhou_EuroSAT\.json lacks key\(s\) \['test'\]"),
    ('{"train": {}, "val": [], "test": []}', r"'train' must be a list"),
    ('{"train": [["Forest/Forest_1.jpg", 1, "Forest"], ["Forest/Forest_2.jpg", 1]], "val": [], "test": []}',
     r"split_zhou_EuroSAT\.json: entry train\[1\] = \['Forest/Forest_2\.jpg', 1\] is not"),
    ('{"train": [], "val": [["Forest/Forest_1.jpg", "one", "Forest"]], "test": []}', r"entry val\[0\]"),
])
def test_malformed_split_file_is_named(tmp_path, content, pattern):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    open(osp.join(dataset_dir, "split_zhou_EuroSAT.json"), "w").write(content)
    with pytest.raises(ValueError, match=pattern):
        build(tmp_path, "EuroSAT")


def test_image_listed_in_split_but_missing_is_named(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    os.remove(osp.join(dataset_dir, "2750", "Forest", "Forest_7.jpg"))
    with pytest.raises(FileNotFoundError, match=r"split_zhou_EuroSAT\.json \((val|test)\[\d+\]\).*Forest_7\.jpg"):
        build(tmp_path, "EuroSAT")


def test_image_listed_in_annotations_but_missing_is_named(tmp_path):
    dataset_dir = fx.make_oxford_pets_tree(str(tmp_path))
    os.remove(osp.join(dataset_dir, "images", "Bengal_2.jpg"))
    with pytest.raises(FileNotFoundError, match=r"trainval\.txt \(line 22\).*Bengal_2\.jpg"):
        build(tmp_path, "OxfordPets")


def test_unknown_class_in_an_annotation_list_is_named(tmp_path):
    dataset_dir = fx.make_fgvc_aircraft_tree(str(tmp_path))
    with open(osp.join(dataset_dir, "images_variant_val.txt"), "a") as f:
        f.write("1000001 Boeing 999\n")
    with pytest.raises(ValueError, match=r"Unknown class 'Boeing 999' in .*images_variant_val\.txt \(line 7\)"):
        build(tmp_path, "FGVCAircraft")


def test_missing_annotation_file_is_named(tmp_path):
    dataset_dir = fx.make_sun397_tree(str(tmp_path))
    os.remove(osp.join(dataset_dir, "ClassName.txt"))
    with pytest.raises(FileNotFoundError, match=r"SUN397 class list not found: .*ClassName\.txt"):
        build(tmp_path, "SUN397")


def test_build_dataset_names(tmp_path):
    with pytest.raises(KeyError, match=r'Did you mean "EuroSAT"'):
        build(tmp_path, "Eurosat")
    with pytest.raises(ValueError, match="DATASET.NAME is empty"):
        build(tmp_path, "")
    assert {r[0] for r in READERS} | {r[0] for r in TEST_ONLY} | {"ImageNet"} <= set(DATASET_REGISTRY)


def test_dataset_configs_name_registered_readers():
    import yaml

    folder = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "configs", "datasets")
    for fname in ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                  "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101", "imagenetv2",
                  "imagenet_sketch", "imagenet_a", "imagenet_r"):
        name = yaml.safe_load(open(osp.join(folder, fname + ".yaml")))["DATASET"]["NAME"]
        assert name in DATASET_REGISTRY, fname


# -- Datum, DatasetBase, read_image ----------------------------------------------------------------------------
def test_datum_requires_the_file_and_is_immutable(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        Datum(impath=str(tmp_path / "missing.jpg"))
    d = _datum(tmp_path, 3, 0, "cat")
    assert (d.label, d.domain, d.classname) == (3, 0, "cat")
    with pytest.raises(AttributeError):
        d.label = 4
    assert pickle.loads(pickle.dumps(d)) == d


def test_dataset_base_classes_come_from_train_x(tmp_path):
    train = [_datum(tmp_path, 2, 0, "c"), _datum(tmp_path, 0, 0, "a")]
    ds = DatasetBase(train_x=train, test=[_datum(tmp_path, 5, 0, "z")])
    assert ds.num_classes == 3 and ds.lab2cname == {0: "a", 2: "c"} and ds.classnames == ["a", "c"]
    assert ds.train_u is None and ds.val is None
    assert list(ds.split_dataset_by_label(train)) == [2, 0] and list(ds.split_dataset_by_domain(train)) == [0]
    with pytest.raises(ValueError, match="train_x is empty"):
        DatasetBase(train_x=[])


def test_read_image(tmp_path):
    img = read_image(fx.write_image(str(tmp_path / "g.png"), gray=True))
    assert img.mode == "RGB" and img.size == (8, 8)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"Cannot read image .*bad\.jpg"):
        read_image(str(bad))
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg"):
        read_image(str(tmp_path / "gone.jpg"))
