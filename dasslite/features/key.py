"""What an image-feature cache key is made of: everything that changes a frozen image encoder's output bits.

- the CLIP weights: the sha256 of the checkpoint file's content, computed once per (path, size, mtime_ns) and
  remembered in ``<cache>/clip_digests.json``;
- the images, in loader order: each file's absolute path, size and mtime_ns. A content hash would read every image
  on every run (the I/O the cache is there to save); size + mtime_ns change whenever a file is rewritten (the stamp
  make, rsync and git's index trust). A same-size rewrite that restores the old mtime is not seen: ``python -m
  dasslite.features clear`` after such surgery;
- the test transform, as torchvision describes it (``repr``: sizes, interpolation, crop, mean/std), and the library
  versions that decode and resize (torch, torchvision, Pillow);
- precision (``PREC``), the model's dtype, the device kind (CPU instruction set or GPU model, TF32 switches) and the
  test batch size (a matmul's rounding can depend on the batch shape; the same batches keep results bit-identical).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import torch

from dasslite.utils.io import write_json_atomic

from .cache import DIGEST_INDEX

KEY_FORMAT = 1
_MEMO: dict = {}


def file_stamp(path: str) -> tuple:
    """(absolute path, size, mtime_ns) of a file; FileNotFoundError names it."""
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(path: str, cache_root: str) -> str:
    """sha256 of the checkpoint file ``path``, hashed once per (path, size, mtime_ns): remembered in this process
    and in ``<cache_root>/clip_digests.json`` (rewritten atomically; a lost update only costs a re-hash)."""
    stamp = "|".join(map(str, file_stamp(path)))
    if stamp in _MEMO:
        return _MEMO[stamp]
    index_path = os.path.join(cache_root, DIGEST_INDEX)
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    digest = index.get(stamp)
    if not (isinstance(digest, str) and len(digest) == 64):
        print(f"Feature cache: hashing the CLIP weights {path} (once per file version)")
        digest = file_sha256(path)
        index = {k: v for k, v in index.items() if not k.startswith(os.path.abspath(path) + "|")}
        index[stamp] = digest
        write_json_atomic(index_path, index, unique=True)
    _MEMO[stamp] = digest
    return digest


def images_digest(paths: Sequence[str]) -> str:
    """sha256 over the ordered (path, size, mtime_ns) stamps of the image files."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(("|".join(map(str, file_stamp(path))) + "\n").encode("utf-8"))
    return digest.hexdigest()


def device_kind(device: torch.device) -> str:
    """The hardware a result's bits depend on: the CPU's vector instruction set, or the GPU model + TF32 switches."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        return f"cuda:{name}:sm_{major}{minor}:tf32={int(tf32[0])}{int(tf32[1])}"
    if device.type == "cpu":
        return f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    return device.type


def library_versions() -> dict:
    import PIL
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}


def build_key(*, outputs: str, weights_sha256: str, image_paths: Sequence[str], transform, precision: str,
              dtype: torch.dtype, device: torch.device, batch_size: int) -> dict:
    """The key of one entry (see the module docstring). ``outputs`` names what the encoder returns (e.g.
    ``clip_image_encoder``; a per-layer encoder names its layers), so different outputs never share an entry."""
    return {
        "format": KEY_FORMAT,
        "outputs": outputs,
        "weights_sha256": weights_sha256,
        "images": images_digest(image_paths),
        "n_images": len(image_paths),
        "transform": repr(transform),
        "precision": precision,
        "dtype": str(dtype),
        "device": device_kind(device),
        "batch_size": int(batch_size),
        "versions": library_versions(),
    }
