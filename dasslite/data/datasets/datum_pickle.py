"""Datum pickles (few-shot caches, ImageNet's ``preprocessed.pkl``) in Dassl's own format, readable by both engines.

Dassl's readers ``pickle.load`` these files and expect ``dassl.data.datasets.base_dataset.Datum`` objects, so our
Datum is written under that name: a CoOp fork pointed at the same data root reads our caches, and we read theirs
(Dassl's Datum and ours have the same four attributes). Dassl only reads the keys it knows (``train``, ``val``,
``test``), so provenance rides along in the same dict under :data:`SOURCE_KEY`.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

from ...utils.io import write_atomic
from .base_dataset import Datum as BuiltinDatum

__all__ = ["DASSL_DATUM", "SOURCE_KEY", "dumps_dassl_format", "dump_dassl_format", "load_datum_file"]

DASSL_DATUM = ("dassl.data.datasets.base_dataset", "Datum")
OUR_DATUM = (BuiltinDatum.__module__, BuiltinDatum.__qualname__)
SOURCE_KEY = "dasslite_source"  # provenance of a cache; Dassl never reads it
PROTOCOL = 4  # readable by every Python 3 a Dassl fork runs on


class _DasslFormatPickler(pickle._Pickler):  # the pure-Python pickler: the one whose global writer can be swapped
    """Writes our Datum class as the global ``dassl.data.datasets.base_dataset.Datum``; everything else as usual."""

    def save_global(self, obj, name=None):
        if obj is BuiltinDatum:
            self.save(DASSL_DATUM[0])
            self.save(DASSL_DATUM[1])
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dumps_dassl_format(payload: Any) -> bytes:
    """``payload`` pickled with every Datum (ours or Dassl's) under Dassl's module path."""
    buffer = io.BytesIO()
    _DasslFormatPickler(buffer, protocol=PROTOCOL).dump(payload)
    return buffer.getvalue()


def dump_dassl_format(path: str, payload: Any) -> str:
    """Write ``payload`` to ``path`` in Dassl's format, atomically (temp file + rename)."""
    data = dumps_dassl_format(payload)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomic(path, write)


class _EitherEngineUnpickler(pickle.Unpickler):
    """Maps Dassl's Datum to the installed Dassl's class, or to ours when Dassl is not importable."""

    def find_class(self, module: str, name: str):
        if (module, name) == DASSL_DATUM:
            try:
                return super().find_class(module, name)
            except ImportError:
                return BuiltinDatum
        return super().find_class(module, name)


def load_datum_file(path: str) -> Any:
    """Unpickle a Datum file written by either engine (errors propagate; callers name the file)."""
    with open(path, "rb") as f:
        return _EitherEngineUnpickler(f).load()
