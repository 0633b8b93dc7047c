"""The demo world's recipe: every number that decides its dataset and its CLIP, in one frozen, hashable record."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, Tuple

# Bump when the generator or the pre-training code changes what a recipe produces: the cache folder is versioned.
GENERATOR_VERSION = 1

EUROSAT_TEMPLATE = "a centered satellite photo of {}."

# Caption templates of the synthetic pre-training corpus. CoOp's EuroSAT template is one of several, as it would be
# one phrasing among many in a web corpus; "a photo of a {}." is CoOp's usual context initialisation.
CAPTION_TEMPLATES: Tuple[str, ...] = (
    EUROSAT_TEMPLATE,
    "a satellite photo of {}.",
    "a satellite image of {}.",
    "an aerial photo of {}.",
    "an overhead view of {}.",
    "a photo of {}.",
    "a photo of a {}.",
    "{}.",
)
# Per template: the chance that its caption names another class than the scene's (mostly a look-alike). Generic
# phrasings are used sloppily, remote-sensing ones precisely, so the best context for this corpus is not the
# EuroSAT template: zero-shot CLIP is mediocre and a learned context (CoOp) can find better.
TEMPLATE_NOISE: Tuple[float, ...] = (0.75, 0.1, 0.1, 0.1, 0.1, 0.75, 0.75, 0.75)


@dataclass(frozen=True)
class DemoRecipe:
    """What a demo world is made of. Two builds from equal recipes are identical (same machine, same libraries)."""

    seed: int = 0
    # dataset: images per class in each split, and how they are encoded
    n_train: int = 40
    n_val: int = 10
    n_test: int = 30
    jpeg_quality: int = 90
    foreign_p: float = 0.3          # chance that a scene carries an element of another class (lane, pond, houses)
    # CLIP architecture (OpenAI ViT; widths are multiples of 64 since build_model infers heads = width // 64)
    image_resolution: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 3
    embed_dim: int = 64
    text_width: int = 64
    text_layers: int = 2
    # contrastive pre-training on captioned scenes from a separate random stream
    pretrain_images: int = 3000
    pretrain_steps: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    templates: Tuple[str, ...] = CAPTION_TEMPLATES
    template_noise: Tuple[float, ...] = TEMPLATE_NOISE
    threads: int = 2                # torch threads during the build (results depend on the reduction order)

    def __post_init__(self) -> None:
        for name in ("vision_width", "text_width"):
            if getattr(self, name) % 64:
                raise ValueError(f"{name} must be a multiple of 64 (OpenAI's build_model infers heads = width // 64)")
        if self.image_resolution % self.patch_size:
            raise ValueError("image_resolution must be divisible by patch_size")
        if min(self.n_train, self.n_val, self.n_test, self.pretrain_images, self.pretrain_steps, self.batch_size) < 1:
            raise ValueError("split sizes, pretrain_images, pretrain_steps and batch_size must be >= 1")
        if not 0.0 <= self.foreign_p <= 1.0:
            raise ValueError("foreign_p must be in [0, 1]")
        if len(self.template_noise) != len(self.templates) or not all(0 <= q < 1 for q in self.template_noise):
            raise ValueError("template_noise needs one rate in [0, 1) per caption template")
        for template in self.templates:
            if template.count("{}") != 1:
                raise ValueError(f'caption template {template!r} must contain exactly one "{{}}"')

    def to_dict(self) -> Dict[str, Any]:
        data = dataclasses.asdict(self)
        data["templates"] = list(self.templates)
        data["template_noise"] = list(self.template_noise)
        return {"generator_version": GENERATOR_VERSION, **data}

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the recipe (and the generator version)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def small(cls, **overrides: Any) -> "DemoRecipe":
        """A few-second world for tests of the machinery (layout, determinism, caching); not a useful CLIP."""
        values: Dict[str, Any] = dict(n_train=3, n_val=1, n_test=2, vision_layers=1, text_layers=1,
                                      pretrain_images=60, pretrain_steps=3, batch_size=16, warmup_steps=1)
        values.update(overrides)
        return cls(**values)
