"""Which engine our trainers and datasets plug into: real Dassl (``dassl``) when it is importable, the built-in one
otherwise. ``DASSLITE_BACKEND`` forces either: ``dassl`` (error if it is missing), ``builtin``, or ``auto`` (default).

Decided here, in a module that imports nothing of ours, so that the data and engine modules can ask without
importing :mod:`dasslite.compat` (which imports them).
"""
from __future__ import annotations

import importlib.util
import os

_VALID = ("auto", "dassl", "builtin")


def _resolve_backend() -> str:
    wanted = os.environ.get("DASSLITE_BACKEND", "auto").strip().lower() or "auto"
    if wanted not in _VALID:
        raise ValueError(f"DASSLITE_BACKEND={wanted!r} is not one of {', '.join(_VALID)}")
    has_dassl = importlib.util.find_spec("dassl") is not None
    if wanted == "dassl" and not has_dassl:
        raise ImportError("DASSLITE_BACKEND=dassl but the 'dassl' package is not importable "
                          "(install Dassl.pytorch, or unset DASSLITE_BACKEND to use the built-in engine)")
    if wanted == "builtin" or not has_dassl:
        return "builtin"
    return "dassl"


BACKEND = _resolve_backend()
