"""Atomic file writes: a crashed or failed run never leaves a half-written file (results, splits, checkpoints)."""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def atomic_path(path: str, unique: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it into place (mode 0644) if the block succeeds, else delete it.

    The temporary name is derived from ``path`` (not random), so writers that embed their file name (``torch.save``)
    produce the same bytes for the same content. ``unique`` adds the process id and a random token instead, for
    files that several processes may write at once (the feature cache): each writes its own temporary file and the
    last rename wins, so a reader only ever sees one writer's complete file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    token = f".{os.getpid()}.{uuid.uuid4().hex[:12]}" if unique else ""
    tmp = os.path.join(folder, f".{os.path.basename(path)}{token}.tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path: str, write: Callable[[str], None], unique: bool = False) -> str:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically; returns ``path``."""
    with atomic_path(path, unique=unique) as tmp:
        write(tmp)
    return os.fspath(path)


def write_bytes_atomic(path: str, data: bytes, unique: bool = False) -> str:
    """Write ``data`` to ``path`` atomically (``unique``: safe with concurrent writers); returns ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomic(path, write, unique=unique)


def write_text_atomic(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, payload, unique: bool = False, **json_kwargs) -> str:
    """Write ``payload`` as JSON (default: indent 2) atomically."""
    json_kwargs.setdefault("indent", 2)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(payload, f, **json_kwargs)
            f.write("\n")

    return write_atomic(path, write, unique=unique)
