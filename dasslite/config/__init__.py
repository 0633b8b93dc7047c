"""Config: Dassl's defaults (``get_cfg_default``) plus our own non-Dassl keys."""
from yacs.config import CfgNode

from .defaults import _C


def get_cfg_default() -> CfgNode:
    """A fresh copy of the global defaults (Dassl's keys and values)."""
    return _C.clone()


__all__ = ["CfgNode", "get_cfg_default"]

from .checked_merge import merge_from_file_checked, merge_from_list_checked  # noqa: E402

__all__ += ["merge_from_file_checked", "merge_from_list_checked"]
