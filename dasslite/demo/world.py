"""Building, caching and evaluating the demo world.

A world is one folder::

    <cache_dir>/v<GENERATOR_VERSION>[-<recipe digest>]/
        data/eurosat/2750/<Folder>/<Folder>_<i>.jpg      EuroSAT's layout (the DATA root is data/)
        data/eurosat/split_zhou_EuroSAT.json             {"train"|"val"|"test": [[relpath, label, classname], ...]}
        clip/demo-clip-vit.pt                            OpenAI-format state dict of the pre-trained tiny CLIP
        DEMO_WORLD.json                                  the completion marker: recipe, file sizes and hashes

It is built in a temporary sibling folder, the marker is written last, and the folder is renamed into place, so a
crashed build never leaves anything that looks complete. Builders of the same world take a lock, and a world whose
marker does not match the recipe is rebuilt.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import numpy as np
import torch

from . import pretrain, scenes
from .recipe import EUROSAT_TEMPLATE, GENERATOR_VERSION, DemoRecipe

PathLike = Union[str, Path]
Log = Callable[[str], None]

MARKER = "DEMO_WORLD.json"
MARKER_FORMAT = 1
DATA_DIR = "data"
CHECKPOINT = "clip/demo-clip-vit.pt"
IMAGE_DIR = "eurosat/2750"
SPLIT_FILE = "eurosat/split_zhou_EuroSAT.json"
ENV_DIR = "DASSLITE_DEMO_DIR"


@dataclass(frozen=True)
class DemoWorld:
    """A built demo world: pass ``root`` as ``--root`` and ``clip_checkpoint`` as ``MODEL.BACKBONE.NAME``."""

    path: Path                  # the world's folder
    recipe: DemoRecipe
    info: Dict[str, Any] = field(default_factory=dict, compare=False)   # the marker's content

    @property
    def root(self) -> Path:
        """The DATA root (holds ``eurosat/``)."""
        return self.path / DATA_DIR

    @property
    def clip_checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def split_file(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGE_DIR


def default_cache_dir() -> Path:
    """``$DASSLITE_DEMO_DIR``, else ``~/.cache/dasslite/demo``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dasslite" / "demo"


def world_dir_name(recipe: DemoRecipe) -> str:
    """``v<N>`` for the default recipe, ``v<N>-<digest>`` for any other (so they never overwrite each other)."""
    name = f"v{GENERATOR_VERSION}"
    return name if recipe == DemoRecipe() else f"{name}-{recipe.digest()[:12]}"


def _stderr(message: str) -> None:
    print(f"[dasslite.demo] {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------- dataset
def _write_dataset(data_root: Path, recipe: DemoRecipe) -> Dict[str, Any]:
    """Render and write the images and the split file; returns their hashes."""
    image_root = data_root / IMAGE_DIR
    split: Dict[str, List[list]] = {"train": [], "val": [], "test": []}
    sizes = (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test))
    images_digest = hashlib.sha256()
    for label, (folder, classname) in enumerate(zip(scenes.FOLDERS, scenes.CLASSNAMES)):
        (image_root / folder).mkdir(parents=True)
        index = 0
        for split_name, count in sizes:
            for _ in range(count):
                rng = scenes.image_rng(recipe.seed, pretrain.DATASET_STREAM, label, index)
                pixels = scenes.render(label, rng, foreign_p=recipe.foreign_p)
                index += 1
                relpath = f"{folder}/{folder}_{index}.jpg"  # EuroSAT numbers its files from 1
                data = pretrain.jpeg_bytes(pixels, recipe.jpeg_quality)
                (image_root / relpath).write_bytes(data)
                images_digest.update(relpath.encode() + b"\0" + hashlib.sha256(data).digest())
                split[split_name].append([relpath, label, classname])
    split_path = data_root / SPLIT_FILE
    with open(split_path, "w") as f:
        json.dump(split, f, indent=4, separators=(",", ": "))
    return {"images_sha256": images_digest.hexdigest(), "n_images": sum(len(v) for v in split.values())}


def read_split(world: DemoWorld, split: str = "test") -> List[list]:
    with open(world.split_file) as f:
        return json.load(f)[split]


# ------------------------------------------------------------------------------------------------- evaluation
def load_split_images(world: DemoWorld, split: str = "test") -> tuple:
    """Normalised images [N, 3, H, W] and labels [N] of a split, read from the JPEG files as the trainers read them
    (the test transform's resize + centre crop are the identity at the native 64 px)."""
    from PIL import Image

    items = read_split(world, split)
    pixels = []
    for relpath, _, _ in items:
        with Image.open(world.image_dir / relpath) as image:
            pixels.append(np.asarray(image.convert("RGB")))
    images = pretrain.normalize(torch.from_numpy(np.stack(pixels)))
    return images, torch.tensor([label for _, label, _ in items], dtype=torch.long)


def zero_shot_accuracy(world: DemoWorld, template: str = EUROSAT_TEMPLATE, split: str = "test") -> float:
    """Zero-shot accuracy of the world's CLIP on a split with one template (CoOp's ZeroshotCLIP, plain torch).

    The checkpoint is loaded the way trainers load it (OpenAI's ``build_model``, fp16 weights, then ``.float()``).
    """
    from ..clip.load import load_clip_file

    # build_model initialises a CLIP (global RNG) before loading the weights: keep the caller's RNG untouched
    with pretrain.build_threads(world.recipe.threads), torch.random.fork_rng(devices=[]):
        model = load_clip_file(world.clip_checkpoint).float().eval()
        images, labels = load_split_images(world, split)
        logits = pretrain.zero_shot_logits(model, images, template)
    return int((logits.argmax(dim=1) == labels).sum()) / len(labels)


# ----------------------------------------------------------------------------------------------------- build
def build_world(path: PathLike, recipe: Optional[DemoRecipe] = None, log: Optional[Log] = None) -> DemoWorld:
    """Build a world into the empty or absent folder ``path`` (not atomic: ``ensure_demo_world`` wraps this)."""
    recipe = recipe or DemoRecipe()
    log = log or _stderr
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"demo world target {path} is not empty")
    start = time.perf_counter()
    world = DemoWorld(path=path, recipe=recipe)
    dataset = _write_dataset(world.root, recipe)
    log(f"wrote {dataset['n_images']} images in {time.perf_counter() - start:.1f} s; pre-training the demo CLIP "
        f"({recipe.pretrain_steps} steps)")
    model = pretrain.pretrain_clip(recipe, log=log)
    from ..clip.tiny import save_state_dict

    save_state_dict(model, world.clip_checkpoint)
    accuracy = zero_shot_accuracy(world)
    seconds = time.perf_counter() - start
    info = {
        "format": MARKER_FORMAT,
        "recipe": recipe.to_dict(),
        "recipe_sha256": recipe.digest(),
        "files": {
            f"{DATA_DIR}/{SPLIT_FILE}": {"bytes": world.split_file.stat().st_size, "sha256": _sha256(world.split_file)},
            CHECKPOINT: {"bytes": world.clip_checkpoint.stat().st_size, "sha256": _sha256(world.clip_checkpoint)},
        },
        "dataset": dataset,
        "zero_shot_test_accuracy": accuracy,
        "zero_shot_template": EUROSAT_TEMPLATE,
        "build_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    with open(path / MARKER, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    log(f"demo world built in {seconds:.0f} s; zero-shot test accuracy {100 * accuracy:.1f}%")
    return DemoWorld(path=path, recipe=recipe, info=info)


def load_world(path: PathLike, recipe: Optional[DemoRecipe] = None, verify: bool = False) -> Optional[DemoWorld]:
    """The complete world at ``path`` built from ``recipe``, or None (no marker, another recipe, missing or
    resized files; with ``verify`` also a file whose SHA-256 differs from the marker's)."""
    recipe = recipe or DemoRecipe()
    path = Path(path)
    try:
        with open(path / MARKER) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != MARKER_FORMAT or info.get("recipe_sha256") != recipe.digest():
        return None
    for relpath, expected in (info.get("files") or {}).items():
        file = path / relpath
        try:
            if file.stat().st_size != expected["bytes"] or (verify and _sha256(file) != expected["sha256"]):
                return None
        except (OSError, KeyError, TypeError):
            return None
    return DemoWorld(path=path, recipe=recipe, info=info)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX flock); a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent builders still end consistently through the atomic rename
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_demo_world(cache_dir: Optional[PathLike] = None, force: bool = False,
                      recipe: Optional[DemoRecipe] = None, log: Optional[Log] = None,
                      verify: bool = False) -> DemoWorld:
    """The demo world in ``cache_dir`` (default: ``$DASSLITE_DEMO_DIR`` or ``~/.cache/dasslite/demo``), built on
    first use (about a minute on a laptop CPU) and then reused; ``force`` rebuilds it, ``verify`` re-hashes files."""
    recipe = recipe or DemoRecipe()
    log = log or _stderr
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = world_dir_name(recipe)
    final = cache / name
    if not force:
        world = load_world(final, recipe, verify)
        if world is not None:
            return world
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f".{name}.lock"):
        if not force:  # another process may have finished it while we waited for the lock
            world = load_world(final, recipe, verify)
            if world is not None:
                return world
        for pattern in (f".{name}.build-*", f".{name}.old-*"):  # left by a killed build (we hold the lock)
            for stale in cache.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        log(f"building the demo world in {final} (once; about a minute)")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=cache))
        try:
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would follow the folder into place
            build_world(staging, recipe, log)
            if final.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=cache))
                os.replace(final, trash / name)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    world = load_world(final, recipe)
    if world is None:  # pragma: no cover - only if the folder is changed under our feet
        raise RuntimeError(f"demo world at {final} is incomplete right after building it")
    return world
