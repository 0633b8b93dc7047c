"""Few-shot caches: written in Dassl's format (a CoOp fork reads them), tied to their split and dataset folder."""
import json
import os
import os.path as osp
import pickle
import pickletools
import random
import subprocess
import sys
import textwrap

import pytest

import datasets  # noqa: F401  (registers the readers)
from dasslite.compat import BACKEND, build_dataset
from dasslite.config import get_cfg_default
from dasslite.data.datasets.datum_pickle import SOURCE_KEY, load_datum_file
from dasslite.data.datasets.fewshot import fewshot_cache_path
from tests import dataset_fixtures as fx

pytestmark = pytest.mark.skipif(BACKEND == "dassl", reason="checks the built-in engine's cache writer")


def build(root, shots=2, seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = str(root), "EuroSAT", shots, seed
    random.seed(seed)
    return build_dataset(cfg)


def globals_in(path):
    """(module, name) of every class a pickle refers to (protocol 4: two strings then STACK_GLOBAL)."""
    strings, found = [], []
    with open(path, "rb") as f:
        for op, arg, _ in pickletools.genops(f.read()):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
            elif op.name == "STACK_GLOBAL":
                found.append((strings[-2], strings[-1]))
            elif op.name == "GLOBAL":
                found.append(tuple(arg.split(" ", 1)))
    return set(found)


# A stand-in for a CoOp fork's environment: Dassl's Datum (same attributes as the real one), no dasslite at all.
FAKE_DASSL = '''
class Datum:
    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label
'''


def test_cache_is_in_dassls_format_and_loads_without_dasslite(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path / "data"))
    ds = build(tmp_path / "data")
    pkl = fewshot_cache_path(dataset_dir, 2, 1)
    assert globals_in(pkl) == {("dassl.data.datasets.base_dataset", "Datum")}
    fake = tmp_path / "fork"
    for pkg in ("dassl", "dassl/data", "dassl/data/datasets"):
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    (fake / "dassl/data/datasets/base_dataset.py").write_text(FAKE_DASSL)
    reader = textwrap.dedent(f"""
        import json, pickle, sys
        sys.modules["dasslite"] = None  # a CoOp fork has no dasslite
        with open({pkl!r}, "rb") as f:
            data = pickle.load(f)
        print(json.dumps([type(data["train"][0]).__module__,
                          [[x.impath, x.label] for x in data["train"]], len(data["val"])]))
    """)
    proc = subprocess.run([sys.executable, "-c", reader], cwd=str(fake), env=dict(os.environ, PYTHONPATH=str(fake)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module, train, n_val = json.loads(proc.stdout)
    assert module == "dassl.data.datasets.base_dataset"
    assert train == [[x.impath, x.label] for x in ds.train_x] and n_val == len(ds.val)


def test_cache_records_its_split_and_folder(tmp_path):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    build(tmp_path)
    source = load_datum_file(fewshot_cache_path(dataset_dir, 2, 1))[SOURCE_KEY]  # maps Dassl's Datum to ours
    assert source["dataset_dir"] == dataset_dir and len(source["split_digest"]) == 64
    assert (source["num_shots"], source["seed"]) == (2, 1)


def regenerate_split(dataset_dir):
    """Write another split file: each class's images cut in reverse order, so old train images become test ones."""
    path = osp.join(dataset_dir, "split_zhou_EuroSAT.json")
    with open(path) as f:
        old = json.load(f)
    new = {"train": [], "val": [], "test": []}
    for label in range(10):
        items = [e for key in ("train", "val", "test") for e in old[key] if e[1] == label][::-1]
        new["train"] += items[:4]
        new["val"] += items[4:6]
        new["test"] += items[6:]
    fx.write_split_json(path, new)
    return new


def test_cache_of_a_regenerated_split_is_rebuilt_not_reused(tmp_path, capsys):
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    build(tmp_path)
    new_split = regenerate_split(dataset_dir)
    capsys.readouterr()
    ds = build(tmp_path)
    assert "WARNING: few-shot cache" in capsys.readouterr().out
    test_images = {osp.join(dataset_dir, "2750", e[0]) for e in new_split["test"]}
    assert not [x.impath for x in ds.train_x + ds.val if x.impath in test_images]
    os.remove(fewshot_cache_path(dataset_dir, 2, 1))
    assert build(tmp_path).train_x == ds.train_x  # the same sample a fresh cache gets


def test_foreign_cache_with_images_outside_the_split_is_rebuilt(tmp_path, capsys):
    """A cache without our provenance (e.g. written by Dassl) is checked item by item against the split."""
    dataset_dir = fx.make_eurosat_tree(str(tmp_path))
    ds = build(tmp_path, shots=-1)
    pkl = fewshot_cache_path(dataset_dir, 2, 1)
    os.makedirs(osp.dirname(pkl))
    with open(pkl, "wb") as f:  # test images posing as train shots
        pickle.dump({"train": ds.test, "val": ds.val}, f)
    capsys.readouterr()
    fewshot = build(tmp_path)
    out = capsys.readouterr().out
    assert "20 'train' images that are not train images of the current split" in out
    assert {x.impath for x in fewshot.train_x} <= {x.impath for x in ds.train_x}
