"""The evaluation side of the image-feature cache: one context manager around a trainer's test loop.

On a miss the evaluation runs exactly as without the cache while the model's ``image_output_hook`` records the image
encoder's raw outputs; after a successful evaluation they are stored. On a hit the split's loader is replaced, for the
duration of the evaluation, by one that yields the stored outputs in the same batches (same labels, paths, indices),
and the model (``image_outputs_given``) takes them instead of images: no JPEG is decoded, no image encoded, and the
logits are computed by the same code on the same bits (normalisation included), so accuracies match to the last digit.

Only trainers that declare their image path frozen (``IMAGE_PATH_FROZEN``, ``image_cache_refusal``) use it, and only
when no image-encoder parameter is trainable, the loader is sequential and the transform is one torchvision pipeline.
The outcome (``hit``, ``stored``, ``off``, ``not used``) is logged and recorded as ``feature_cache`` in the test
results (train.py writes it into results.json).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch.utils.data import SequentialSampler

from dasslite.clip.download import backbone_urls, default_cache_dir as clip_cache_dir
from dasslite.prompting.model import ClipClassifier

from .cache import FeatureStore, default_cache_dir, default_max_gb, key_digest
from .key import build_key, weights_digest

OUTPUT_NAME = "image_features"  # the one output of CLIP's image encoder (a multi-output encoder stores several)
ENCODER_OUTPUTS = "clip_image_encoder"


@dataclass
class CacheSettings:
    enabled: bool
    root: str
    max_bytes: int


def cache_settings(cfg) -> CacheSettings:
    """``FEATURE_CACHE.{ENABLED, DIR, MAX_GB}`` (DIR "" / MAX_GB 0: ``$DASSLITE_FEATURE_CACHE[_MAX_GB]`` or the
    defaults); a config without the node (a fork that never called extend_cfg) gets the defaults."""
    node = cfg.get("FEATURE_CACHE") if hasattr(cfg, "get") else None
    enabled = bool(node.ENABLED) if node is not None else True
    root = (node.DIR if node is not None else "") or default_cache_dir()
    max_gb = (node.MAX_GB if node is not None else 0) or default_max_gb()
    if max_gb < 0:
        raise ValueError("FEATURE_CACHE.MAX_GB must be >= 0 (0 = $DASSLITE_FEATURE_CACHE_MAX_GB or the default), "
                         f"got {max_gb}")
    return CacheSettings(enabled, os.path.abspath(os.path.expanduser(root)), int(max_gb * 1e9))


def frozen_model_refusal(model) -> Optional[str]:
    """Why ``model``'s image path cannot be cached (None: it can): it must be a ``ClipClassifier`` (the hooks live
    there) whose image encoder has no trainable parameter."""
    if not isinstance(model, ClipClassifier):
        return f"{type(model).__name__} is not a ClipClassifier"
    tuned = [n for n, p in model.image_encoder.named_parameters() if p.requires_grad]
    if tuned:
        return f"the image encoder has trainable parameters ({tuned[0]}, ... {len(tuned)} in all)"
    return None


def loader_refusal(loader) -> Optional[str]:
    wrapper = getattr(loader, "dataset", None)
    if not hasattr(wrapper, "data_source") or not hasattr(wrapper, "transform"):
        return "the evaluation loader is not a DatasetWrapper"
    if wrapper.transform is None or isinstance(wrapper.transform, (list, tuple)) or wrapper.k_tfm != 1:
        return "the test transform is not a single torchvision pipeline"
    if not isinstance(loader.sampler, SequentialSampler):
        return f"the evaluation sampler is {type(loader.sampler).__name__}, not SequentialSampler"
    return None


def checkpoint_file(backbone: str) -> Optional[str]:
    """The local file ``load_clip(backbone)`` reads (a path, or a downloaded backbone's file), or None."""
    path = Path(str(backbone)).expanduser()
    if path.is_file():
        return str(path)
    url = backbone_urls().get(str(backbone))
    if url:
        candidate = Path(clip_cache_dir()).expanduser() / os.path.basename(url.rstrip("/"))
        if candidate.is_file():
            return str(candidate)
    return None


def evaluation_loader(trainer, split: Optional[str]):
    """(attribute name, loader) that ``evaluate_split`` will iterate for ``split``."""
    split = split or trainer.cfg.TEST.SPLIT
    if split == "val" and getattr(trainer, "val_loader", None) is not None:
        return "val_loader", trainer.val_loader
    return "test_loader", trainer.test_loader


class StoredOutputLoader:
    """The batches of ``loader`` with the stored encoder outputs as ``img`` (same batch size, order and fields)."""

    def __init__(self, loader, outputs: torch.Tensor) -> None:
        self.batch_size = loader.batch_size
        self.dataset = loader.dataset
        self.sampler = loader.sampler
        self.outputs = outputs

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict]:
        items = self.dataset.data_source
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            yield {"img": self.outputs[start:start + len(chunk)],
                   "label": torch.tensor([d.label for d in chunk], dtype=torch.long),
                   "domain": torch.tensor([d.domain for d in chunk], dtype=torch.long),
                   "impath": [d.impath for d in chunk],
                   "index": torch.arange(start, start + len(chunk))}


def _annotate(trainer, record: dict) -> None:
    results = getattr(trainer, "last_test_results", None)
    if isinstance(results, dict):
        results["feature_cache"] = record


@contextmanager
def image_feature_cache(trainer, split: Optional[str] = None) -> Iterator[None]:
    """Around ``evaluate_split(trainer, split)``: read the split's image-encoder outputs from the cache, or record
    and store them (see the module docstring)."""
    settings = cache_settings(trainer.cfg)
    start = time.perf_counter()
    if not settings.enabled:
        yield
        _annotate(trainer, {"state": "off", "seconds": round(time.perf_counter() - start, 3)})
        return
    attr, loader = evaluation_loader(trainer, split)
    model = trainer.model
    reason = trainer.image_cache_refusal() or frozen_model_refusal(model) or loader_refusal(loader)
    weights = None if reason else checkpoint_file(trainer.cfg.MODEL.BACKBONE.NAME)
    if not reason and weights is None:
        reason = f"no local checkpoint file for backbone {trainer.cfg.MODEL.BACKBONE.NAME!r}"
    if reason:
        print(f"Feature cache: not used ({reason})")
        yield
        _annotate(trainer, {"state": "not used", "reason": reason,
                            "seconds": round(time.perf_counter() - start, 3)})
        return

    store = FeatureStore(settings.root, settings.max_bytes)
    items = loader.dataset.data_source
    try:
        key = build_key(outputs=ENCODER_OUTPUTS, weights_sha256=weights_digest(weights, store.root),
                        image_paths=[d.impath for d in items], transform=loader.dataset.transform,
                        precision=trainer.precision, dtype=model.dtype, device=trainer.device,
                        batch_size=loader.batch_size)
        stored = store.get(key)
    except OSError as exc:  # an unreadable image fails the evaluation itself, with the loader's own error
        reason = f"{type(exc).__name__}: {exc}"
        print(f"Feature cache: not used ({reason})")
        yield
        _annotate(trainer, {"state": "not used", "reason": reason, "seconds": round(time.perf_counter() - start, 3)})
        return
    digest = key_digest(key)
    if stored is not None and OUTPUT_NAME in stored and stored[OUTPUT_NAME].shape[0] == len(items):
        print(f"Feature cache: image features of the {len(items)} evaluation images come from the cache "
              f"(entry {digest[:12]} in {store.root}); no image is decoded or encoded")
        setattr(trainer, attr, StoredOutputLoader(loader, stored[OUTPUT_NAME]))
        model.image_outputs_given = True
        try:
            yield
        finally:
            model.image_outputs_given = False
            setattr(trainer, attr, loader)
        _annotate(trainer, {"state": "hit", "entry": digest, "dir": store.root,
                            "seconds": round(time.perf_counter() - start, 3)})
        return

    recorded = []
    model.image_output_hook = lambda raw: recorded.append(raw.detach().to("cpu", copy=True))
    try:
        yield
    finally:
        model.image_output_hook = None
    seconds = round(time.perf_counter() - start, 3)
    n_rows = sum(r.shape[0] for r in recorded)
    if n_rows != len(items):
        reason = f"the model encoded {n_rows} images for {len(items)} evaluation images"
        print(f"Feature cache: not stored ({reason})")
        _annotate(trainer, {"state": "not used", "reason": reason, "seconds": seconds})
        return
    info = {"dataset": trainer.cfg.DATASET.NAME, "subsample": trainer.cfg.DATASET.get("SUBSAMPLE_CLASSES", ""),
            "split": "val" if attr == "val_loader" else "test", "backbone": trainer.cfg.MODEL.BACKBONE.NAME,
            "precision": trainer.precision, "images": len(items)}
    try:
        path = store.put(key, {OUTPUT_NAME: torch.cat(recorded)}, info)
    except OSError as exc:
        print(f"Feature cache: WARNING: could not store the image features in {store.root} ({exc}); the results "
              "are unaffected")
        _annotate(trainer, {"state": "store failed", "reason": str(exc), "seconds": seconds})
        return
    print(f"Feature cache: image features of the {len(items)} evaluation images stored in {path}")
    _annotate(trainer, {"state": "stored", "entry": digest, "dir": store.root, "seconds": seconds})
