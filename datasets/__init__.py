"""Benchmark dataset readers; importing this package registers every reader in the active DATASET_REGISTRY."""
from . import (caltech101, dtd, eurosat, fgvc_aircraft, food101, imagenet, imagenet_a, imagenet_r,  # noqa: F401
               imagenet_sketch, imagenetv2, osr_benchmarks, oxford_flowers, oxford_pets, stanford_cars, sun397,
               ucf101, vtab)

__all__ = ["caltech101", "dtd", "eurosat", "fgvc_aircraft", "food101", "imagenet", "imagenet_a", "imagenet_r",
           "imagenet_sketch", "imagenetv2", "osr_benchmarks", "oxford_flowers", "oxford_pets", "stanford_cars",
           "sun397", "ucf101", "vtab"]
