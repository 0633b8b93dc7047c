"""Checkpoint download: the backbone-name -> URL table and a verified, atomic, resumable-by-rerun download.

OpenAI's URLs carry the file's sha256 as their second-to-last path part; we verify it while streaming, write to a
temporary file next to the target and rename only a verified file into place, so an interrupted or corrupted
download never leaves a file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

CHUNK_BYTES = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_EXTRA_URLS: Dict[str, str] = {}


class ChecksumError(RuntimeError):
    """A downloaded (or cached) file's sha256 differs from the expected one."""


def openai_urls() -> Dict[str, str]:
    """OpenAI's own name -> URL table (``clip.clip._MODELS``)."""
    from ._import import import_clip

    return dict(import_clip().clip._MODELS)


def backbone_urls() -> Dict[str, str]:
    """Every known backbone name -> URL: OpenAI's table plus names added with ``register_backbone_url``."""
    return {**openai_urls(), **_EXTRA_URLS}


def available_backbones() -> List[str]:
    """Names ``load_clip`` accepts besides file paths."""
    return list(backbone_urls())


def register_backbone_url(name: str, url: str) -> None:
    """Make ``load_clip(name)`` download from ``url`` (a mirror, or a local server in tests); overrides OpenAI's."""
    _EXTRA_URLS[name] = url


def unregister_backbone_url(name: str) -> None:
    """Undo ``register_backbone_url`` (no error if ``name`` was not registered)."""
    _EXTRA_URLS.pop(name, None)


def default_cache_dir() -> Path:
    """``$CLIP_CACHE_DIR`` if set, else ``~/.cache/clip`` (where OpenAI's ``clip.load`` keeps its files)."""
    env = os.environ.get("CLIP_CACHE_DIR")
    return Path(env).expanduser() if env else Path("~/.cache/clip").expanduser()


def sha256_from_url(url: str) -> Optional[str]:
    """The hex digest OpenAI embeds as the second-to-last path part of its URLs, or None."""
    parts = urllib.parse.urlparse(url).path.rstrip("/").split("/")
    if len(parts) >= 2 and _SHA256_RE.match(parts[-2].lower()):
        return parts[-2].lower()
    return None


def file_sha256(path: Union[str, Path]) -> str:
    """sha256 hex digest of a file, read in chunks (checkpoints can be ~1 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream_to_temp(url: str, root: Path, name: str, timeout: float) -> Tuple[Path, str]:
    """Download ``url`` into a fresh temporary file in ``root``; return (temp path, sha256). Removes it on error."""
    from tqdm import tqdm

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=root)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="iB", unit_scale=True, unit_divisor=1024, ncols=80, disable=None) as bar:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


def download_checkpoint(url: str, root: Union[str, Path], expected_sha256: Optional[str] = None,
                        timeout: float = 60.0) -> Path:
    """Return the verified local copy of ``url`` in ``root``, downloading it only if no verified copy exists."""
    expected = (expected_sha256 or sha256_from_url(url) or "").lower()
    if not expected:
        raise ValueError(f"cannot verify {url}: its path carries no sha256 (OpenAI's do); pass expected_sha256")
    name = os.path.basename(urllib.parse.urlparse(url).path.rstrip("/"))
    if not name:
        raise ValueError(f"cannot derive a file name from URL {url}")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if target.exists() and not target.is_file():
        raise RuntimeError(f"{target} exists and is not a regular file; remove it to download {url}")
    if target.is_file():
        if file_sha256(target) == expected:
            return target
        print(f"{target} exists but its sha256 does not match {url}; downloading it again")

    print(f"Downloading {url} to {target}")
    try:
        tmp, actual = _stream_to_temp(url, root, name, timeout)
    except urllib.error.URLError as exc:
        raise RuntimeError(f"could not download {url}: {exc}. Without network access, place the file at "
                           f"{target} (sha256 {expected}) and run again") from exc
    if actual != expected:
        tmp.unlink(missing_ok=True)
        raise ChecksumError(f"sha256 mismatch for {url}: expected {expected}, got {actual}; nothing was kept")
    os.replace(tmp, target)
    return target
