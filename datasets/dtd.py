"""Describable Textures: ``dtd/images/<texture>/*.jpg`` with ``split_zhou_DescribableTextures.json`` (50/20/30)."""
from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(DatasetBase):
    """47 texture classes named by their folders."""

    dataset_dir = "dtd"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "images")
        train, val, test = build_splits(
            self, cfg, lambda: read_and_split_data(self.image_dir), "split_zhou_DescribableTextures.json")
        super().__init__(train_x=train, val=val, test=test)
