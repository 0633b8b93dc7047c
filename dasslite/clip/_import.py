"""Import OpenAI's ``clip`` package even where setuptools no longer ships ``pkg_resources``.

openai-clip 1.0.1 does ``from pkg_resources import packaging`` at import time, only to compare torch versions.
setuptools >= 81 removed ``pkg_resources``. While ``clip`` is being imported we put a one-attribute stand-in
(the real ``packaging`` distribution) in ``sys.modules`` and afterwards restore whatever was there, so nothing
else in the process ever sees the stand-in and the (slow, deprecated) real ``pkg_resources`` is never imported
on our behalf.
"""
from __future__ import annotations

import importlib
import sys
import types
from types import ModuleType

SHIM_MARKER = "__dasslite_shim__"
_ABSENT = object()


def _make_pkg_resources_shim() -> ModuleType:
    """A module that offers ``pkg_resources.packaging`` and nothing else (all clip needs)."""
    import packaging
    import packaging.version  # noqa: F401  (clip uses packaging.version.parse)

    shim = types.ModuleType("pkg_resources")
    shim.packaging = packaging  # type: ignore[attr-defined]
    setattr(shim, SHIM_MARKER, True)
    return shim


def _import_with_shim() -> ModuleType:
    """Import ``clip`` with the stand-in installed, unless a real ``pkg_resources`` is already loaded."""
    previous = sys.modules.get("pkg_resources", _ABSENT)
    if isinstance(previous, ModuleType) and hasattr(previous, "packaging"):
        return importlib.import_module("clip")
    sys.modules["pkg_resources"] = _make_pkg_resources_shim()
    try:
        return importlib.import_module("clip")
    finally:
        if previous is _ABSENT:
            sys.modules.pop("pkg_resources", None)
        else:
            sys.modules["pkg_resources"] = previous  # type: ignore[assignment]


def import_clip() -> ModuleType:
    """Return OpenAI's ``clip`` module (``clip.tokenize``, ``clip.model``, ``clip.clip._MODELS``)."""
    module = sys.modules.get("clip")
    if module is None:
        try:
            module = _import_with_shim()
        except ModuleNotFoundError as exc:
            if exc.name == "clip":
                raise ModuleNotFoundError(
                    "OpenAI CLIP is not installed: `pip install openai-clip` (or `pip install -e .` in this repo)"
                ) from exc
            raise
    if not (hasattr(module, "tokenize") and hasattr(module, "model")):
        raise ImportError(f"the `clip` module at {getattr(module, '__file__', '?')} is not OpenAI's CLIP "
                          "(no clip.tokenize / clip.model); uninstall it and `pip install openai-clip`")
    return module
