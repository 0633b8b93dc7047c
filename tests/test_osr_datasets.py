"""Open-set benchmark readers on tiny files in the real CIFAR / TinyImageNet formats, their errors, the split lists."""
import hashlib
import json
import os
import os.path as osp
import pickle
import random

import numpy as np
import pytest
from PIL import Image

import datasets  # noqa: F401  (registers the readers)
from dasslite.compat import build_dataset, get_cfg_default
from dasslite.evaluation import open_set  # noqa: F401  (declares cfg.OSR)
from dasslite.prompting.config import extend_cfg
from datasets import osr_benchmarks as B

# sha256 of the canonical JSON of the split lists (sorted keys, no spaces): a change to any list fails here
SPLITS_SHA256 = "ce2576dad6454f07adca2881752aecc21628bfa7c7be97ad4ed018c49c76afa4"
TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 2


def canonical_hash(splits):
    return hashlib.sha256(json.dumps(splits, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def image_rows(labels, seed):
    """[N, 3072] uint8 rows (channel planes, as CIFAR stores them), each image a distinct pattern."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)


def write_pickle(path, payload, bytes_keys=False):
    if bytes_keys:  # what a python-2 pickle of str keys reads back as under encoding="bytes"
        payload = {k.encode(): v for k, v in payload.items()}
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=2)


def make_cifar10(root, bytes_keys=False):
    folder = osp.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(osp.join(folder, "batches.meta"), {"label_names": names}, bytes_keys)
    train_labels = [c for c in range(10) for _ in range(TRAIN_PER_CLASS)]
    chunks = np.array_split(np.arange(len(train_labels)), 5)
    for i, idx in enumerate(chunks, 1):
        labels = [train_labels[j] for j in idx]
        write_pickle(osp.join(folder, f"data_batch_{i}"), {"data": image_rows(labels, i), "labels": labels},
                     bytes_keys)
    test_labels = [c for c in range(10) for _ in range(TEST_PER_CLASS)]
    write_pickle(osp.join(folder, "test_batch"), {"data": image_rows(test_labels, 9), "labels": test_labels},
                 bytes_keys)
    return folder, names


def make_cifar100(root):
    folder = osp.join(root, "cifar-100-python")
    os.makedirs(folder)
    names = [f"fine{c}" for c in range(100)]
    write_pickle(osp.join(folder, "meta"), {"fine_label_names": names, "coarse_label_names": ["x"]})
    train = [c for c in range(100) for _ in range(2)]
    write_pickle(osp.join(folder, "train"), {"data": image_rows(train, 11), "fine_labels": train})
    test = list(range(100))
    write_pickle(osp.join(folder, "test"), {"data": image_rows(test, 12), "fine_labels": test})
    return folder, names


def make_tiny(root, classes=200):
    folder = osp.join(root, "tiny-imagenet-200")
    wnids = [f"n{c:08d}" for c in range(classes)]
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    lines, words = [], []
    for c, wnid in enumerate(wnids):
        os.makedirs(osp.join(folder, "train", wnid, "images"))
        for i in range(2):
            img.save(osp.join(folder, "train", wnid, "images", f"{wnid}_{i}.JPEG"))
        words.append(f"{wnid}\tthing {c}, other name")
        lines.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t8\t8")
    os.makedirs(osp.join(folder, "val", "images"))
    for c in range(classes):
        img.save(osp.join(folder, "val", "images", f"val_{c}.JPEG"))
    with open(osp.join(folder, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(osp.join(folder, "words.txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    with open(osp.join(folder, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    return folder, wnids


def build(root, name, split=0, shots=-1, seed=1):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS = str(root), name, shots
    cfg.OSR.SPLIT, cfg.SEED, cfg.VERBOSE = split, seed, False
    random.seed(seed)
    return build_dataset(cfg)


def test_split_lists_are_pinned_and_consistent():
    splits = B.load_splits()
    assert canonical_hash(splits) == SPLITS_SHA256
    assert all(len(s) == 5 for s in splits.values())
    assert all(len(set(s)) == 6 and set(s) <= set(range(10)) for s in splits["cifar10_known"])
    assert all(len(set(s)) == 4 for s in splits["cifar_plus_known"])
    for plus10, plus50 in zip(splits["cifar_plus10_unknown"], splits["cifar_plus50_unknown"]):
        assert len(set(plus50)) == 50 and plus50[-10:] == plus10  # the note: +50 ends with the +10 list
    assert all(len(set(s)) == 20 and max(s) < 200 for s in splits["tinyimagenet_known"])
    assert splits["cifar10_known"][0] == [0, 6, 4, 9, 1, 7]


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_reader(tmp_path, bytes_keys):
    folder, names = make_cifar10(str(tmp_path), bytes_keys)
    ds = build(tmp_path, "CIFAR10OSR", split=0)
    known = [0, 6, 4, 9, 1, 7]
    assert ds.classnames == [names[c] for c in known]
    assert len(ds.train_x) == 6 * (TRAIN_PER_CLASS - 1) and len(ds.val) == 6 and len(ds.test) == 6 * TEST_PER_CLASS
    unknown = ds.open_set_unknown
    assert unknown["classnames"] == [names[c] for c in (2, 3, 5, 8)]
    assert len(unknown["test"]) == 4 * TEST_PER_CLASS and len(unknown["val"]) == 4
    assert not {x.impath for x in ds.val} & {x.impath for x in ds.train_x}  # held out of training
    # the PNG holds the CIFAR row (channel planes -> HWC): test image 0 is the first test row, class 0
    with open(osp.join(folder, "test_batch"), "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    row = np.asarray(batch[b"data" if bytes_keys else "data"])[0].reshape(3, 32, 32).transpose(1, 2, 0)
    first = next(x for x in ds.test if x.label == 0)
    assert np.array_equal(np.asarray(Image.open(first.impath)), row)
    shots = build(tmp_path, "CIFAR10OSR", split=2, shots=1)
    assert len(shots.train_x) == 6 and shots.classnames == [names[c] for c in [1, 5, 7, 3, 9, 4]]


def test_cifar_plus_readers(tmp_path):
    make_cifar10(str(tmp_path))
    _, names100 = make_cifar100(str(tmp_path))
    ds = build(tmp_path, "CIFARPlus10OSR", split=1)
    assert len(ds.classnames) == 4
    assert ds.open_set_unknown["classnames"] == [names100[c] for c in [41, 9, 49, 40, 73, 60, 48, 30, 95, 71]]
    assert len(ds.open_set_unknown["test"]) == 10 and len(ds.open_set_unknown["val"]) == 10
    ds50 = build(tmp_path, "CIFARPlus50OSR", split=4)
    assert len(ds50.open_set_unknown["classnames"]) == 50 and len(ds50.open_set_unknown["test"]) == 50


def test_tinyimagenet_reader(tmp_path):
    folder, wnids = make_tiny(str(tmp_path))
    ds = build(tmp_path, "TinyImageNetOSR", split=0)
    known = B.load_splits()["tinyimagenet_known"][0]
    assert ds.classnames == [f"thing {c}" for c in known]  # the first name in words.txt
    assert [osp.basename(x.impath) for x in ds.test] == [f"val_{c}.JPEG" for c in known]
    assert len(ds.open_set_unknown["test"]) == 180 and len(ds.open_set_unknown["classnames"]) == 180
    assert len(ds.train_x) == 20 and len(ds.val) == 20  # 2 training images per class: 1 trains, 1 is held out


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        build(tmp_path, "CIFAR10OSR")
    folder, _ = make_cifar10(str(tmp_path))
    os.remove(osp.join(folder, "test_batch"))
    with pytest.raises(FileNotFoundError, match="test_batch"):
        build(tmp_path, "CIFAR10OSR")
    make_cifar10(str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        build(tmp_path / "c", "CIFARPlus10OSR")
    with pytest.raises(FileNotFoundError, match="tiny-imagenet-200"):
        build(tmp_path, "TinyImageNetOSR")
    tiny, _ = make_tiny(str(tmp_path / "t"), classes=200)
    os.remove(osp.join(tiny, "val", "val_annotations.txt"))
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        build(tmp_path / "t", "TinyImageNetOSR")


def test_malformed_files_are_named(tmp_path):
    folder, _ = make_cifar10(str(tmp_path))
    write_pickle(osp.join(folder, "data_batch_3"), {"pixels": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})
    with pytest.raises(B.MalformedDatasetFile, match=r"data_batch_3 has no key\(s\) \['data'\]"):
        build(tmp_path, "CIFAR10OSR")
    write_pickle(osp.join(folder, "data_batch_3"), {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    with pytest.raises(B.MalformedDatasetFile, match="data_batch_3.*expected \\[N, 3072\\]"):
        build(tmp_path, "CIFAR10OSR")
    with open(osp.join(folder, "data_batch_3"), "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(B.MalformedDatasetFile, match="data_batch_3 is not a CIFAR python batch"):
        build(tmp_path, "CIFAR10OSR")
    with open(osp.join(folder, "data_batch_3"), "wb") as f:
        pickle.dump({"data": os.getcwd}, f)  # a pickle that would call arbitrary code is refused
    with pytest.raises(B.MalformedDatasetFile, match="unexpected object"):
        build(tmp_path, "CIFAR10OSR")
    tiny, _ = make_tiny(str(tmp_path / "t"))
    with open(osp.join(tiny, "val", "val_annotations.txt"), "a") as f:
        f.write("val_x.JPEG\tn99999999\t0\t0\t8\t8\n")
    with pytest.raises(B.MalformedDatasetFile, match="val_annotations.txt line 201: WNID 'n99999999'"):
        build(tmp_path / "t", "TinyImageNetOSR")
    with pytest.raises(ValueError, match="OSR.SPLIT 5 is out of range"):
        build(tmp_path, "CIFAR10OSR", split=5)
