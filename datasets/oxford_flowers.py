"""Oxford Flowers-102: ``oxford_flowers/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` + ``cat_to_name.json``."""
import json
import os.path as osp

from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.layout import lookup, require_file
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import split_groups


@DATASET_REGISTRY.register()
class OxfordFlowers(DatasetBase):
    """102 flower species named by ``cat_to_name.json``; split 50/20/30 per class when the split file is absent."""

    dataset_dir = "oxford_flowers"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "jpg")
        self.label_file = osp.join(self.dataset_dir, "imagelabels.mat")
        self.lab2cname_file = osp.join(self.dataset_dir, "cat_to_name.json")
        train, val, test = build_splits(self, cfg, self.read_data, "split_zhou_OxfordFlowers.json")
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self):
        """Group ``image_{i+1:05d}.jpg`` by its 1-based label in the .mat file (first-appearance order) and split."""
        from scipy.io import loadmat

        labels = loadmat(require_file(self.label_file, "OxfordFlowers label file"))["labels"][0]
        with open(require_file(self.lab2cname_file, "OxfordFlowers class-name file")) as f:
            cat_to_name = json.load(f)
        groups = {}
        for i, label in enumerate(labels):
            label = int(label)
            impath = require_file(osp.join(self.image_dir, f"image_{i + 1:05d}.jpg"),
                                  f"Image #{i + 1} of {self.label_file}")
            if label - 1 not in groups:
                groups[label - 1] = ([], lookup(cat_to_name, str(label), self.lab2cname_file))
            groups[label - 1][0].append(impath)
        print("Splitting data into 50% train, 20% val, and 30% test")
        return split_groups(groups, 0.5, 0.2, source=self.label_file)
