"""EuroSAT RGB: ``eurosat/2750/<Class>/*.jpg`` with ``split_zhou_EuroSAT.json`` (generated 50/20/30 if absent)."""
from dasslite.compat import DATASET_REGISTRY, DatasetBase
from dasslite.data.datasets.pipeline import build_splits, locate_dataset
from dasslite.data.datasets.splits import read_and_split_data

# Folder name -> the spelled-out class name used in prompts (and stored in the split file).
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(DatasetBase):
    """Sentinel-2 land use, 10 classes; labels follow the sorted folder names."""

    dataset_dir = "eurosat"

    def __init__(self, cfg):
        locate_dataset(self, cfg, "2750")
        train, val, test = build_splits(
            self, cfg, lambda: read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES), "split_zhou_EuroSAT.json")
        super().__init__(train_x=train, val=val, test=test)
