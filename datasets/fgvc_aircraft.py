"""FGVC-Aircraft: ``fgvc_aircraft/images/*.jpg`` + ``variants.txt`` + ``images_variant_{train,val,test}.txt``."""
import os.path as osp

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import lookup, read_lines, require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset


@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetBase):
    """100 aircraft variants; the official train/val/test lists are the split (no split file)."""

    dataset_dir = "fgvc_aircraft"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "images")
        train, val, test = build_splits(self, cfg, self._read_all)
        super().__init__(train_x=train, val=val, test=test)

    def _read_all(self):
        classnames = read_lines(osp.join(self.dataset_dir, "variants.txt"), "FGVCAircraft variants file")
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_data(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))

    def read_data(self, cname2lab: dict, split_file: str) -> list:
        """Items of one list (lines ``<image id> <variant name>``); label = line index of the variant."""
        path = osp.join(self.dataset_dir, split_file)
        items = []
        for n, line in enumerate(read_lines(path, "FGVCAircraft split file"), start=1):
            imname, _, classname = line.partition(" ")
            label = lookup(cname2lab, classname, f"{path} (line {n})")
            impath = require_file(osp.join(self.image_dir, imname + ".jpg"), f"Image listed in {path} (line {n})")
            items.append(Datum(impath=impath, label=label, classname=classname))
        return items
