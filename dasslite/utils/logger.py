"""Tee stdout/stderr into ``OUTPUT_DIR/log.txt`` (the file CoOp's result parsers read).

Dassl writes a second run into ``log.txt-<timestamp>`` when ``log.txt`` exists, so parsers keep reading the
*old* run. We do the opposite on purpose: the previous ``log.txt`` is renamed to ``log.txt-<timestamp>`` and the
current run always writes ``log.txt``.
"""
from __future__ import annotations

import os
import os.path as osp
import sys
import time

_active = []


class _Tee:
    def __init__(self, stream, fpath: str) -> None:
        self.stream = stream
        self.file = open(fpath, "a", encoding="utf-8")

    def write(self, msg: str) -> None:
        self.stream.write(msg)
        self.file.write(msg)
        self.file.flush()

    def flush(self) -> None:
        self.stream.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def setup_logger(output: str) -> str:
    """Start teeing stdout and stderr into ``output`` (a folder -> ``output/log.txt``); returns the log path."""
    close_logger()
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    os.makedirs(osp.dirname(osp.abspath(fpath)), exist_ok=True)
    if osp.exists(fpath) and osp.getsize(fpath) > 0:
        os.replace(fpath, fpath + time.strftime("-%Y-%m-%d-%H-%M-%S"))
    out, err = _Tee(sys.stdout, fpath), None
    sys.stdout = out
    err = _Tee(sys.stderr, fpath)
    sys.stderr = err
    _active.extend([out, err])
    return fpath


def close_logger() -> None:
    """Stop teeing (tests and notebooks run several trainers in one process)."""
    while _active:
        tee = _active.pop()
        if sys.stdout is tee:
            sys.stdout = tee.stream
        if sys.stderr is tee:
            sys.stderr = tee.stream
        tee.close()
