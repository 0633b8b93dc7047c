"""ImageNetV2 (matched frequency): ``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/*.jpeg``."""
from dasslite.compat import DATASET_REGISTRY

from .imagenet import ImageNetTestOnly


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetTestOnly):
    """Test only; folder ``i`` holds class ``i`` in ``classnames.txt`` order."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def class_folders(self, classnames: dict) -> tuple:
        return [str(i) for i in range(len(classnames))], list(classnames.values())
