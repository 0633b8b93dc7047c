"""SUN397: ``sun397/SUN397/<l>/<scene>[/<sub>]/*.jpg`` + ``ClassName.txt``, ``Training_01.txt``, ``Testing_01.txt``."""
import os.path as osp

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import lookup, read_lines, require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import split_trainval


def scene_name(class_path: str) -> str:
    """``"b/bakery/shop"`` -> ``"shop bakery"``: drop the letter folder, reverse the rest (qualifier first)."""
    return " ".join(class_path.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(DatasetBase):
    """397 scene categories from the first official partition; val is held out of its training list."""

    dataset_dir = "sun397"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "SUN397")
        train, val, test = build_splits(self, cfg, self._generate, "split_zhou_SUN397.json")
        super().__init__(train_x=train, val=val, test=test)

    def _generate(self):
        lines = read_lines(osp.join(self.dataset_dir, "ClassName.txt"), "SUN397 class list")
        cname2lab = {line[1:]: i for i, line in enumerate(lines)}  # "/a/abbey" -> "a/abbey"
        train, val = split_trainval(self.read_data(cname2lab, "Training_01.txt"))
        return train, val, self.read_data(cname2lab, "Testing_01.txt")

    def read_data(self, cname2lab: dict, text_file: str) -> list:
        """Items of one partition list (lines ``/<l>/<scene>/<image>.jpg``)."""
        path = osp.join(self.dataset_dir, text_file)
        items = []
        for n, line in enumerate(read_lines(path, "SUN397 partition file"), start=1):
            imname = line[1:]
            class_path = osp.dirname(imname)
            label = lookup(cname2lab, class_path, f"{path} (line {n})")
            impath = require_file(osp.join(self.image_dir, imname), f"Image listed in {path} (line {n})")
            items.append(Datum(impath=impath, label=label, classname=scene_name(class_path)))
        return items
