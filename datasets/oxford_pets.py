"""Oxford-IIIT Pets: ``oxford_pets/images/*.jpg`` + ``annotations/{trainval,test}.txt``; ``split_zhou_OxfordPets.json``
(val held out of trainval when the split file is absent)."""
import os.path as osp

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import read_lines, require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(DatasetBase):
    """37 breeds; the class name is the lower-cased file-name stem (``Abyssinian_12`` -> ``abyssinian``)."""

    dataset_dir = "oxford_pets"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "images")
        self.anno_dir = osp.join(self.dataset_dir, "annotations")
        train, val, test = build_splits(self, cfg, self._generate, "split_zhou_OxfordPets.json")
        super().__init__(train_x=train, val=val, test=test)

    def _generate(self):
        train, val = split_trainval(self.read_data("trainval.txt"))
        return train, val, self.read_data("test.txt")

    def read_data(self, split_file: str) -> list:
        """Items of one annotation list (lines ``<image stem> <class id 1..37> <species> <breed id>``)."""
        path = osp.join(self.anno_dir, split_file)
        items = []
        for n, line in enumerate(read_lines(path, "OxfordPets annotation file"), start=1):
            if line.startswith("#"):
                continue
            parts = line.split(" ")
            if len(parts) != 4 or not parts[1].isdigit():
                raise ValueError(f"{path}, line {n}: expected '<image> <class id> <species> <breed id>', got {line!r}")
            breed = "_".join(parts[0].split("_")[:-1]).lower()
            impath = require_file(osp.join(self.image_dir, parts[0] + ".jpg"), f"Image listed in {path} (line {n})")
            items.append(Datum(impath=impath, label=int(parts[1]) - 1, classname=breed))
        return items
