"""Stanford Cars: ``stanford_cars/{cars_train,cars_test}/*.jpg`` + devkit .mat files; split paths relative to the
dataset folder (``split_zhou_StanfordCars.json``)."""
import os.path as osp

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import split_trainval


def year_first(classname: str) -> str:
    """``"Tesla Model S Sedan 2012"`` -> ``"2012 Tesla Model S Sedan"`` (the lineage's prompt form)."""
    words = classname.split(" ")
    return " ".join([words[-1]] + words[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(DatasetBase):
    """196 car models, model year moved to the front of the name."""

    dataset_dir = "stanford_cars"

    def __init__(self, cfg):
        locate_dataset(self, cfg)
        train, val, test = build_splits(self, cfg, self._generate, "split_zhou_StanfordCars.json",
                                        relative_to_dataset_dir=True)
        super().__init__(train_x=train, val=val, test=test)

    def _generate(self):
        meta = osp.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_data("cars_train", osp.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), meta)
        test = self.read_data("cars_test", osp.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir: str, anno_file: str, meta_file: str) -> list:
        """Items of one annotation .mat (``fname``, 1-based ``class``), named from ``cars_meta.mat``."""
        from scipy.io import loadmat

        annos = loadmat(require_file(anno_file, "StanfordCars annotation file"))["annotations"][0]
        names = loadmat(require_file(meta_file, "StanfordCars meta file"))["class_names"][0]
        items = []
        for i, anno in enumerate(annos):
            fname = str(anno["fname"][0])
            label = int(anno["class"][0, 0]) - 1
            if not 0 <= label < len(names):
                raise ValueError(f"{anno_file}: annotation {i} ({fname}) has class {label + 1}, "
                                 f"but {meta_file} names {len(names)} classes")
            impath = require_file(osp.join(self.dataset_dir, image_dir, fname), f"Image listed in {anno_file}")
            items.append(Datum(impath=impath, label=label, classname=year_first(str(names[label][0]))))
        return items
