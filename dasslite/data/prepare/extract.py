"""Archive extraction into a temporary folder under the root, then renames into the dataset folder.

Nothing is written outside the root: tar members are filtered with Python's ``data`` filter (no absolute paths, no
``..``, no links leaving the folder, no device files) and zip members are checked the same way before extraction.
An interrupted extraction leaves only the temporary folder, which the next run deletes and redoes.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from typing import List, Mapping

__all__ = ["ArchiveError", "extract_into", "archive_kind"]


class ArchiveError(RuntimeError):
    """An archive that cannot be read, or does not hold the members the recipe expects."""


def archive_kind(path: str) -> str:
    """``"zip"`` or ``"tar"`` by content (not by name); ArchiveError for anything else."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise ArchiveError(f"{path} is neither a zip nor a tar archive (a truncated or corrupt download, or an HTML "
                       "error page saved in its place).")


def _unpack(path: str, dest: str) -> None:
    kind = archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    resolved = os.path.realpath(os.path.join(dest, name))
                    if os.path.isabs(name) or not resolved.startswith(os.path.realpath(dest) + os.sep):
                        raise ArchiveError(f"{path}: member {name!r} would be written outside the extraction folder")
                archive.extractall(dest)
        else:
            with tarfile.open(path) as archive:
                archive.extractall(dest, filter="data")
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"cannot extract {path} ({type(exc).__name__}: {exc}): the archive is corrupt or "
                           "truncated, or holds a member that would land outside its folder.") from exc


def _top_level(folder: str) -> List[str]:
    return sorted(os.listdir(folder))


def _replace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``, first removing what a half-finished earlier run left at ``dst``."""
    if os.path.isdir(dst) and not os.path.islink(dst):
        shutil.rmtree(dst)
    elif os.path.lexists(dst):
        os.remove(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.replace(src, dst)


def extract_into(archive: str, moves: Mapping[str, str], dataset_dir: str, scratch: str) -> List[str]:
    """Extract ``archive`` into a fresh folder in ``scratch`` and move ``member -> dataset-relative destination``
    into ``dataset_dir`` (``"x/*"``: every child of x; ``"*"``: every top-level entry). Returns the paths made.
    ``scratch`` must be on the same filesystem as ``dataset_dir`` (both are under the root) so moves are renames."""
    os.makedirs(scratch, exist_ok=True)
    work = tempfile.mkdtemp(prefix=os.path.basename(archive) + ".", dir=scratch)
    try:
        _unpack(archive, work)
        planned = []
        for member, dest in moves.items():
            if member == "*" or member.endswith("/*"):
                folder = os.path.join(work, member[:-1].rstrip("/"))
                if not os.path.isdir(folder):
                    raise ArchiveError(f"{archive} has no folder {member[:-2]!r}; its top level holds "
                                       f"{_top_level(work)}. The server may serve a different release.")
                planned += [(os.path.join(folder, child), os.path.join(dataset_dir, dest, child))
                            for child in _top_level(folder)]
            else:
                src = os.path.join(work, member)
                if not os.path.lexists(src):
                    raise ArchiveError(f"{archive} has no member {member!r}; its top level holds {_top_level(work)}. "
                                       "The server may serve a different release.")
                planned.append((src, os.path.normpath(os.path.join(dataset_dir, dest))))
        for src, dst in planned:
            _replace(src, dst)
        return [dst for _, dst in planned]
    finally:
        shutil.rmtree(work, ignore_errors=True)
