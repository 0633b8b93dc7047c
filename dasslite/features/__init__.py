"""A persistent cache of frozen image-encoder outputs for evaluation (``FeatureStore``, ``image_feature_cache``).

``python -m dasslite.features list`` prints its entries, ``... clear`` deletes them. See README, "Image-feature cache".
"""
from . import config  # noqa: F401  (registers the FEATURE_CACHE config node)
from .cache import FeatureStore, default_cache_dir
from .evaluation import image_feature_cache

__all__ = ["FeatureStore", "default_cache_dir", "image_feature_cache"]
