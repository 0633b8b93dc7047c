"""One writer per run folder: train.py holds an exclusive lock on ``<run dir>/.dasslite.lock`` while it runs.

The lock is an OS file lock (``fcntl.flock``), so it is released when the process ends however it ends (even
SIGKILL); the file itself stays and only records who held it last. A second train.py on the same folder (two
sweeps on one output folder, or a rerun while the first still trains) is refused with a message naming the
holder. Where ``fcntl`` does not exist (Windows) runs are not locked.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_FILE", "RunLockedError", "acquire_run_lock", "lock_holder", "describe_holder"]

LOCK_FILE = ".dasslite.lock"
_HELD = {}  # folder -> open file object: kept referenced so the lock lives as long as the process


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


def describe_holder(info: Optional[dict]) -> str:
    """``pid 123 on host, since 2026-01-01 10:00:00: python train.py ...`` (or 'unknown process')."""
    if not info:
        return "an unknown process"
    command = " ".join(info.get("argv", []))
    return (f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
            + (f": {command}" if command else ""))


def _read_info(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None


def lock_holder(folder: str) -> Optional[dict]:
    """Who holds ``folder``'s lock now (the recorded holder info), or None when nobody does."""
    path = osp.join(folder, LOCK_FILE)
    if fcntl is None or not osp.isfile(path) or folder in _HELD:
        return None
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _read_info(path) or {}
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def acquire_run_lock(folder: str) -> None:
    """Lock ``folder`` for this process until it exits; RunLockedError naming the holder if another has it."""
    folder = folder or "."
    if fcntl is None or folder in _HELD:
        return
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, LOCK_FILE)
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise RunLockedError(f"Run folder {folder} is in use by {describe_holder(_read_info(path))}. Wait for it to "
                             "finish or stop it; two runs must not write one folder") from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "argv": [sys.executable] + sys.argv,
                        "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
    f.flush()
    _HELD[folder] = f
