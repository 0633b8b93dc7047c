"""ImageNet-A: ``imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (200 classes; ``README.txt`` ignored)."""
from dasslite.compat import DATASET_REGISTRY

from .imagenet import ImageNetTestOnly


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestOnly):
    """Test only; its 200 classes relabelled 0..199 in sorted wnid-folder order."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
