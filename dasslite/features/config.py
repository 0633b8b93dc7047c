"""``FEATURE_CACHE``: the image-feature cache's config keys (declared here, next to the code that reads them)."""
from yacs.config import CfgNode as CN

from dasslite.prompting.config import register_config


@register_config
def add_feature_cache_config(cfg) -> None:
    node = CN()
    node.ENABLED = True  # evaluation reuses cached image features where the trainer's image path is frozen
    node.DIR = ""  # "" = $DASSLITE_FEATURE_CACHE, else ~/.cache/dasslite/features
    node.MAX_GB = 0.0  # size limit, least-recently-used entries evicted; 0 = $DASSLITE_FEATURE_CACHE_MAX_GB or 20
    cfg.FEATURE_CACHE = node
