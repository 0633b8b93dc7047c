"""UCF101 mid-frames: ``ucf101/UCF-101-midframes/<Action_Name>/*.jpg`` + ``ucfTrainTestlist/*.txt``."""
import os.path as osp
import re

from dasslite.compat import DATASET_REGISTRY, DatasetBase, Datum
from dasslite.data.datasets.layout import lookup, read_lines, require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import split_trainval


def split_camel_case(action: str) -> str:
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"`` (the mid-frame folder name and the class name)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(DatasetBase):
    """101 actions from split 1; val is held out of the training list."""

    dataset_dir = "ucf101"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "UCF-101-midframes")
        train, val, test = build_splits(self, cfg, self._generate, "split_zhou_UCF101.json")
        super().__init__(train_x=train, val=val, test=test)

    def _generate(self):
        path = osp.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        cname2lab = {}
        for n, line in enumerate(read_lines(path, "UCF101 class index"), start=1):
            index, _, action = line.partition(" ")
            if not index.isdigit() or not action:
                raise ValueError(f"{path}, line {n}: expected '<index> <Action>', got {line!r}")
            cname2lab[action] = int(index) - 1
        train, val = split_trainval(self.read_data(cname2lab, "trainlist01.txt"))
        return train, val, self.read_data(cname2lab, "testlist01.txt")

    def read_data(self, cname2lab: dict, text_file: str) -> list:
        """Items of one list (lines ``<Action>/<clip>.avi[ <label>]``), pointing at the clip's mid-frame .jpg."""
        path = osp.join(self.dataset_dir, "ucfTrainTestlist", text_file)
        items = []
        for n, line in enumerate(read_lines(path, "UCF101 split list"), start=1):
            action, _, clip = line.split(" ")[0].partition("/")
            label = lookup(cname2lab, action, f"{path} (line {n})")
            folder = split_camel_case(action)
            impath = require_file(osp.join(self.image_dir, folder, clip.replace(".avi", ".jpg")),
                                  f"Mid-frame of the clip on {path} line {n}")
            items.append(Datum(impath=impath, label=label, classname=folder))
        return items
