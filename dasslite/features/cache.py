"""A persistent, content-addressed store of image-encoder outputs, shared by runs, seeds, methods and processes.

An entry holds the outputs of a frozen image encoder for one ordered list of images: named tensors [N, ...]
(``image_features`` for CLIP's pooled output; a multi-output encoder such as FSMoE's per-layer features stores one
tensor per layer under its own names). Its file name is the sha256 of its key (a JSON dict that names everything
the outputs depend on, see ``dasslite.features.key``), so equal keys share one file and a different key never
reads it.

File layout (``<root>/entries/<aa>/<digest>.feat``)::

    MAGIC (8 bytes) | sha256 of the rest (32 bytes) | header length (8 bytes, little endian) | header (UTF-8 JSON) |
    payload (the tensors' raw bytes, in header order)

The checksum covers header and payload: a truncated or bit-flipped entry is detected on read, deleted and
recomputed, never used. Writes go through ``dasslite.utils.io`` with a per-process temporary name, so two processes
filling the same entry each rename a complete file into place (the last one wins, both are equal). Reading an
entry marks it used (its mtime); ``put`` then evicts least-recently-used entries beyond the size limit.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import torch

from dasslite.utils.io import write_bytes_atomic

MAGIC = b"DLFEAT1\n"
ENTRY_SUFFIX = ".feat"
ENV_DIR = "DASSLITE_FEATURE_CACHE"
ENV_MAX_GB = "DASSLITE_FEATURE_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


class CorruptEntryError(ValueError):
    """An entry file whose checksum, magic or header does not hold."""


def default_cache_dir() -> str:
    """``$DASSLITE_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/dasslite/features`` (``~/.cache/dasslite/features``)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dasslite", "features")


def default_max_gb() -> float:
    """``$DASSLITE_FEATURE_CACHE_MAX_GB`` or the default (20 GB)."""
    text = os.environ.get(ENV_MAX_GB)
    if not text:
        return DEFAULT_MAX_GB
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{ENV_MAX_GB}={text!r} is not a number of gigabytes (e.g. 20 or 0.5)") from None


def key_digest(key: dict) -> str:
    """The entry name of ``key``: sha256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def encode_entry(key: dict, outputs: Dict[str, torch.Tensor], info: Optional[dict] = None) -> bytes:
    """The bytes of an entry file holding ``outputs`` (CPU tensors) under ``key`` (``info``: for ``list`` only)."""
    layout, chunks, offset = [], [], 0
    for name, tensor in outputs.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if str(tensor.dtype) not in _DTYPES:
            raise TypeError(f"feature cache: output {name!r} has dtype {tensor.dtype}; floating point only")
        data = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        layout.append({"name": name, "dtype": str(tensor.dtype), "shape": list(tensor.shape), "offset": offset,
                       "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    header = json.dumps({"key": key, "outputs": layout, "info": info or {}, "created": time.time()},
                        sort_keys=True).encode("utf-8")
    body = struct.pack("<Q", len(header)) + header + b"".join(chunks)
    return MAGIC + hashlib.sha256(body).digest() + body


def _split(blob: bytes, source: str):
    """(header dict, payload bytes) of an entry's bytes, checksum verified."""
    if len(blob) < len(MAGIC) + 40 or not blob.startswith(MAGIC):
        raise CorruptEntryError(f"{source}: not a feature-cache entry (bad magic or truncated)")
    body = blob[len(MAGIC) + 32:]
    if hashlib.sha256(body).digest() != blob[len(MAGIC):len(MAGIC) + 32]:
        raise CorruptEntryError(f"{source}: checksum mismatch (truncated or corrupted)")
    (length,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8:8 + length].decode("utf-8"))
    return header, body[8 + length:]


def decode_entry(blob: bytes, source: str = "entry") -> tuple:
    """(key, outputs) of an entry's bytes; ``CorruptEntryError`` unless the checksum and the layout hold."""
    header, payload = _split(blob, source)
    outputs: Dict[str, torch.Tensor] = {}
    for spec in header["outputs"]:
        dtype = _DTYPES[spec["dtype"]]
        raw = payload[spec["offset"]:spec["offset"] + spec["nbytes"]]
        numel = 1
        for dim in spec["shape"]:
            numel *= dim
        if len(raw) != spec["nbytes"] or spec["nbytes"] != numel * torch.empty((), dtype=dtype).element_size():
            raise CorruptEntryError(f"{source}: output {spec['name']!r} has {len(raw)} bytes, its shape "
                                    f"{spec['shape']} needs {numel} x {dtype}")
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        outputs[spec["name"]] = flat.view(dtype).reshape(spec["shape"])
    return header["key"], outputs


@dataclass
class EntryInfo:
    """One entry as ``list`` shows it."""

    digest: str
    path: str
    size: int
    last_used: float
    info: dict
    ok: Optional[bool] = None  # None: not verified


class FeatureStore:
    """The cache folder ``root`` with a size limit of ``max_bytes`` (least-recently-used entries are evicted)."""

    def __init__(self, root: Optional[str] = None, max_bytes: Optional[int] = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root or default_cache_dir()))
        self.max_bytes = int(default_max_gb() * 1e9) if max_bytes is None else int(max_bytes)

    @property
    def entries_dir(self) -> str:
        return os.path.join(self.root, "entries")

    def path_for(self, digest: str) -> str:
        return os.path.join(self.entries_dir, digest[:2], digest + ENTRY_SUFFIX)

    def get(self, key: dict) -> Optional[Dict[str, torch.Tensor]]:
        """The outputs stored under ``key``, or None. A corrupt entry is reported, deleted and treated as a miss."""
        path = self.path_for(key_digest(key))
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        try:
            stored_key, outputs = decode_entry(blob, path)
            if stored_key != key:
                raise CorruptEntryError(f"{path}: holds another key than its name says")
        except (CorruptEntryError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            print(f"Feature cache: discarding a corrupt entry ({exc}); the features are computed again")
            self._remove(path)
            return None
        try:
            os.utime(path)  # mark it recently used (the LRU order)
        except OSError:
            pass
        return outputs

    def put(self, key: dict, outputs: Dict[str, torch.Tensor], info: Optional[dict] = None) -> str:
        """Store ``outputs`` under ``key`` atomically, then evict beyond the size limit; returns the entry path."""
        path = self.path_for(key_digest(key))
        write_bytes_atomic(path, encode_entry(key, outputs, info), unique=True)
        self.evict(keep=path)
        return path

    def entries(self) -> Iterator[str]:
        if not os.path.isdir(self.entries_dir):
            return
        for sub in sorted(os.listdir(self.entries_dir)):
            folder = os.path.join(self.entries_dir, sub)
            if os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    if name.endswith(ENTRY_SUFFIX) and not name.startswith("."):
                        yield os.path.join(folder, name)

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Delete least-recently-used entries until the total size is within ``max_bytes`` (never ``keep``)."""
        stats = []
        for path in self.entries():
            try:
                st = os.stat(path)
            except FileNotFoundError:  # another process evicted it
                continue
            stats.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in stats)
        removed = []
        for _, size, path in sorted(stats):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            self._remove(path)
            removed.append(path)
            total -= size
        if removed:
            print(f"Feature cache: evicted {len(removed)} least-recently-used entr{'y' if len(removed) == 1 else 'ies'}"
                  f" (limit {self.max_bytes / 1e9:g} GB)")
        return removed

    def describe(self, verify: bool = False) -> List[EntryInfo]:
        """Every entry, most recently used first (``verify``: check each checksum)."""
        rows = []
        for path in self.entries():
            try:
                st = os.stat(path)
                with open(path, "rb") as f:
                    blob = f.read() if verify else f.read(len(MAGIC) + 40 + 65536)
            except FileNotFoundError:
                continue
            info, ok = {}, None
            try:
                if verify:
                    header, _ = _split(blob, path)
                    ok = True
                else:
                    (length,) = struct.unpack("<Q", blob[len(MAGIC) + 32:len(MAGIC) + 40])
                    header = json.loads(blob[len(MAGIC) + 40:len(MAGIC) + 40 + length].decode("utf-8"))
                info = dict(header.get("info", {}), outputs={o["name"]: o["shape"] for o in header["outputs"]})
            except (CorruptEntryError, ValueError, KeyError, struct.error):
                ok = False
            digest = os.path.basename(path)[:-len(ENTRY_SUFFIX)]
            rows.append(EntryInfo(digest, path, st.st_size, st.st_mtime, info, ok))
        return sorted(rows, key=lambda r: -r.last_used)

    def clear(self) -> int:
        """Delete every entry and the CLIP digest index; returns the bytes freed."""
        freed = 0
        for path in self.entries():
            try:
                freed += os.path.getsize(path)
            except OSError:
                pass
        if os.path.isdir(self.entries_dir):
            shutil.rmtree(self.entries_dir, ignore_errors=True)
        index = os.path.join(self.root, DIGEST_INDEX)
        if os.path.exists(index):
            os.remove(index)
        return freed

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


DIGEST_INDEX = "clip_digests.json"
