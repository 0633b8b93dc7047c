"""Import OpenAI's ``clip`` package even where setuptools no longer ships ``pkg_resources``.

openai-clip 1.0.1 does ``from pkg_resources import packaging`` at import time only to compare torch
versions. setuptools >= 81 removed ``pkg_resources``; we provide the one attribute it needs (the real
``packaging`` distribution) instead of pinning an old setuptools into every user's environment.
"""
from __future__ import annotations

import importlib
import sys
import types


def _install_pkg_resources_shim() -> None:
    import packaging.version  # noqa: F401  (a declared dependency)
    import packaging

    shim = types.ModuleType("pkg_resources")
    shim.packaging = packaging  # type: ignore[attr-defined]
    shim.__dict__["__dasslite_shim__"] = True
    sys.modules["pkg_resources"] = shim


def import_clip():
    """Return the ``clip`` module, installing the ``pkg_resources`` shim only if it is needed."""
    if "clip" in sys.modules:
        return sys.modules["clip"]
    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        _install_pkg_resources_shim()
    try:
        return importlib.import_module("clip")
    except ModuleNotFoundError as exc:
        if exc.name == "clip":
            raise ModuleNotFoundError(
                "OpenAI CLIP is not installed: `pip install openai-clip` (or `pip install -e .` in this repo)"
            ) from exc
        raise
