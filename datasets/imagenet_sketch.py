"""ImageNet-Sketch: ``imagenet-sketch/images/<wnid>/*.JPEG``."""
from dasslite.compat import DATASET_REGISTRY

from .imagenet import ImageNetTestOnly


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestOnly):
    """Test only; 1000 classes, label = index of the sorted wnid folder."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
