"""Caltech-101: ``caltech-101/101_ObjectCategories/<class>/*.jpg`` with ``split_zhou_Caltech101.json`` (50/20/30)."""
from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]  # clutter class and a duplicate of Faces
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    """100 object classes (background and easy faces dropped), plural folder names made singular."""

    dataset_dir = "caltech-101"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "101_ObjectCategories")
        train, val, test = build_splits(
            self, cfg, lambda: read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES),
            "split_zhou_Caltech101.json")
        super().__init__(train_x=train, val=val, test=test)
