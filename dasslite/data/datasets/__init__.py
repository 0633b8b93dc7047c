"""Dataset registry, Datum/DatasetBase, and the shared split / few-shot / subsample pipeline for readers."""
from .build import DATASET_REGISTRY, build_dataset  # isort:skip
from .base_dataset import Datum, DatasetBase, read_image, sample_per_class
from .fewshot import fewshot_cache_path, fewshot_train_val, subsample_classes
from .pipeline import build_splits, fewshot_and_subsample, locate_dataset
from .splits import load_or_create_split, read_and_split_data, read_split, save_split, split_trainval

__all__ = [
    "DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase", "read_image", "sample_per_class",
    "fewshot_cache_path", "fewshot_train_val", "subsample_classes", "build_splits", "fewshot_and_subsample",
    "locate_dataset", "load_or_create_split", "read_and_split_data", "read_split", "save_split", "split_trainval",
]
