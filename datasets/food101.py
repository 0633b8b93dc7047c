"""Food-101: ``food-101/images/<dish>/*.jpg`` with ``split_zhou_Food101.json`` (50/20/30 if absent)."""
from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import read_and_split_data


@DATASET_REGISTRY.register()
class Food101(DatasetBase):
    """101 dishes named by their folders (``apple_pie``; trainers turn ``_`` into spaces in prompts)."""

    dataset_dir = "food-101"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "images")
        train, val, test = build_splits(
            self, cfg, lambda: read_and_split_data(self.image_dir), "split_zhou_Food101.json")
        super().__init__(train_x=train, val=val, test=test)
