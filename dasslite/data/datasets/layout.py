"""On-disk checks and listings for dataset readers; every failure names the path it was looking for."""
from __future__ import annotations

import os
import os.path as osp
from typing import Any, Iterable, List, Mapping

__all__ = ["resolve_root", "require_dir", "require_file", "read_lines", "list_class_dirs", "list_files", "lookup"]


def resolve_root(cfg) -> str:
    """Absolute ``DATASET.ROOT`` (``~`` expanded, empty means the working directory, as in Dassl); must exist."""
    raw = cfg.DATASET.ROOT
    root = osp.abspath(osp.expanduser(raw))
    if not osp.isdir(root):
        raise FileNotFoundError(f"DATASET.ROOT {raw!r} (resolved to {root}) is not an existing folder; "
                                "pass --root pointing at the folder that holds the datasets")
    return root


def require_dir(path: str, what: str) -> str:
    """``path`` if it is a folder, else FileNotFoundError naming ``what`` and the path."""
    if not osp.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path} (check DATASET.ROOT / --root and the folder layout)")
    return path


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else FileNotFoundError naming ``what`` and the path."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_lines(path: str, what: str = "annotation file") -> List[str]:
    """Stripped, non-empty lines of a text file that must exist."""
    require_file(path, what)
    with open(path, "r") as f:
        return [line.strip() for line in f if line.strip()]


def list_class_dirs(path: str, ignored: Iterable[str] = ()) -> List[str]:
    """Sorted non-hidden sub-folder names of ``path`` minus ``ignored`` (label = index in this list)."""
    skip = set(ignored)
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".") and e.name not in skip)


def list_files(path: str) -> List[str]:
    """Sorted non-hidden file names in a folder that must exist (sorted so results do not depend on the filesystem)."""
    require_dir(path, "Image folder")
    return sorted(e.name for e in os.scandir(path) if e.is_file() and not e.name.startswith("."))


def lookup(mapping: Mapping, key: Any, source: str) -> Any:
    """``mapping[key]``, else ValueError naming the key and where it came from (file and line)."""
    try:
        return mapping[key]
    except KeyError:
        raise ValueError(f"Unknown class {key!r} in {source}") from None
