"""Contrastive pre-training of the demo's tiny CLIP on captioned synthetic scenes (CLIP's symmetric InfoNCE).

The corpus is a pool of scenes from the pre-training random stream (never a dataset image), each seen under random
flips and quarter turns, with a caption drawn per use: a random template from the recipe and the scene's class
name, or, with the template's noise rate, another class's name (mostly a look-alike's: crop vs crop, vegetation vs
vegetation, road vs river, ...). Generic phrasings ("a photo of {}.", CoOp's EuroSAT template) are noisy, the
remote-sensing ones clean. So the image encoder learns the scenes well, zero-shot CLIP with the EuroSAT template
stays mediocre (about 55% on the demo test split), and a learned context (CoOp) has a real gap to close.

Everything random comes from generators seeded by the recipe, the build runs with a fixed thread count and leaves
the caller's RNG and thread count as they were, so a recipe always gives the same weights on a given machine and
library stack.
"""
from __future__ import annotations

import io
import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..clip.text import TextEncoder, tokenize
from ..clip.tiny import build_tiny_clip
from . import scenes
from .recipe import DemoRecipe

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DATASET_STREAM = 0    # the images written to disk (train / val / test)
PRETRAIN_STREAM = 1   # the pre-training corpus

# Classes a noisy caption confuses a scene with (label -> look-alike labels, in FOLDERS order). Every class has one
# in its own half (base = the first five, new = the last five), so base-only and new-only zero-shot stay mediocre.
LOOK_ALIKES: Tuple[Tuple[int, ...], ...] = ((6, 2), (2,), (1, 5, 0), (8, 4), (7, 3), (2, 6), (0, 5, 7), (4, 6),
                                            (3, 9), (8,))
LOOK_ALIKE_SHARE = 0.85  # of the noisy captions; the rest name a uniformly drawn other class


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """The JPEG encoding used for every demo image (fixed quality, 4:4:4 chroma, no optimisation passes)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=int(quality), subsampling=0)
    return buffer.getvalue()


def jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """What a reader of the JPEG file sees (the pre-training corpus gets the same compression as the dataset)."""
    with Image.open(io.BytesIO(jpeg_bytes(pixels, quality))) as image:
        return np.asarray(image.convert("RGB"))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W], scaled to [0, 1] and normalised with CLIP's mean/std
    (exactly what ToTensor + Normalize do in the training pipeline)."""
    x = images.permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@contextmanager
def build_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads and restore the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def render_corpus(recipe: DemoRecipe) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pre-training pool: uint8 images [N, H, W, 3] (JPEG round-tripped) and labels [N], classes interleaved."""
    n_classes = len(scenes.FOLDERS)
    labels = [i % n_classes for i in range(recipe.pretrain_images)]
    indices = [i // n_classes for i in range(recipe.pretrain_images)]
    pixels = [jpeg_roundtrip(p, recipe.jpeg_quality) for p in
              scenes.render_many(labels, recipe.seed, PRETRAIN_STREAM, indices, foreign_p=recipe.foreign_p)]
    return torch.from_numpy(np.stack(pixels)), torch.tensor(labels, dtype=torch.long)


def caption_table(recipe: DemoRecipe) -> List[str]:
    """Every caption the corpus can use; caption ``t * n_classes + c`` is template ``t`` with class name ``c``."""
    return [template.format(name) for template in recipe.templates for name in scenes.CLASSNAMES]


def _look_alike_table() -> Tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in LOOK_ALIKES)
    table = torch.tensor([[p[j % len(p)] for j in range(width)] for p in LOOK_ALIKES])
    return table, torch.tensor([len(p) for p in LOOK_ALIKES])


def sample_captions(labels: torch.Tensor, recipe: DemoRecipe, generator: torch.Generator) -> torch.Tensor:
    """Caption indices (into ``caption_table``) for a batch of scene labels: a random template, and the true class
    name, or with the template's noise rate another class's (a look-alike's, or any other's)."""
    n_classes = len(scenes.FOLDERS)
    n = labels.shape[0]
    template = torch.randint(len(recipe.templates), (n,), generator=generator)
    noisy = torch.rand(n, generator=generator) < torch.tensor(recipe.template_noise)[template]
    look_alike = torch.rand(n, generator=generator) < LOOK_ALIKE_SHARE
    table, counts = _look_alike_table()
    slot = torch.minimum((torch.rand(n, generator=generator) * counts[labels]).long(), counts[labels] - 1)
    other = torch.randint(n_classes - 1, (n,), generator=generator)
    other = other + (other >= labels).long()          # any class but the true one
    named = torch.where(noisy, torch.where(look_alike, table[labels, slot], other), labels)
    return template * n_classes + named


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and quarter turn per image (overhead scenes have no up or left); [N, H, W, 3]."""
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    turns = torch.randint(4, (n,), generator=generator)
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(2), images)
    out = images.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            out[chosen] = torch.rot90(images[chosen], k, dims=(1, 2))
    return out


def build_model(recipe: DemoRecipe) -> nn.Module:
    return build_tiny_clip(embed_dim=recipe.embed_dim, image_resolution=recipe.image_resolution,
                           vision_layers=recipe.vision_layers, vision_width=recipe.vision_width,
                           vision_patch_size=recipe.patch_size, context_length=77, vocab_size=49408,
                           transformer_width=recipe.text_width, transformer_heads=recipe.text_width // 64,
                           transformer_layers=recipe.text_layers, vision="vit", seed=recipe.seed)


def _param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Decay matrices; leave gains, biases, embeddings (most token rows are never used) and the scale alone."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        no_decay = (param.ndim < 2 or name.startswith(("token_embedding", "positional_embedding", "logit_scale"))
                    or name.endswith(("positional_embedding", "class_embedding")))
        (keep if no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def _lr_at(step: int, recipe: DemoRecipe) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.pretrain_steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: pair i is the positive of row i and of column i."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.t()
    target = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def pretrain_clip(recipe: DemoRecipe, log: Optional[Callable[[str], None]] = None,
                  corpus: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                  every: Optional[Tuple[int, Callable[[int, nn.Module], None]]] = None) -> nn.Module:
    """The demo CLIP (fp32, eval mode), pre-trained from its seeded initialisation; deterministic per recipe.

    ``corpus`` replaces the rendered pool (images, labels); ``every=(k, fn)`` calls ``fn(step, model)`` after every
    k-th step (for calibration studies; ``fn`` must leave the model's parameters and mode as it found them).
    """
    with build_threads(recipe.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        start = time.perf_counter()
        images, labels = corpus if corpus is not None else render_corpus(recipe)
        model = build_model(recipe).train()
        text_encoder = TextEncoder(model, freeze=False)
        tokens = tokenize(caption_table(recipe))
        optimizer = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.98),
                                      eps=1e-6)
        generator = torch.Generator().manual_seed(recipe.seed)
        max_scale = math.log(100.0)
        order = torch.randperm(images.shape[0], generator=generator)
        cursor = 0
        for step in range(recipe.pretrain_steps):
            if cursor + recipe.batch_size > order.numel():   # a new pass over the pool
                order, cursor = torch.randperm(images.shape[0], generator=generator), 0
            batch = order[cursor:cursor + recipe.batch_size]
            cursor += recipe.batch_size
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, recipe)
            x = normalize(augment(images[batch], generator))
            captions = sample_captions(labels[batch], recipe, generator)
            text_features = text_encoder.encode_tokens(tokens)[captions]
            loss = clip_loss(model.encode_image(x), text_features, model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, max_scale)
            if every is not None and (step + 1) % every[0] == 0:
                every[1](step + 1, model)
            if log is not None and (step + 1) % 100 == 0:
                log(f"demo CLIP pre-training: step {step + 1}/{recipe.pretrain_steps}, loss {loss.item():.3f}, "
                    f"logit scale {model.logit_scale.exp().item():.1f}, {time.perf_counter() - start:.0f} s")
    return model.eval()


@torch.no_grad()
def zero_shot_logits(model: nn.Module, images: torch.Tensor, template: str,
                     classnames: Sequence[str] = scenes.CLASSNAMES, batch_size: int = 250) -> torch.Tensor:
    """Zero-shot logits [N, C] of normalised images [N, 3, H, W] with one template (CoOp's ZeroshotCLIP)."""
    model = model.eval()
    text = F.normalize(model.encode_text(tokenize([template.format(c) for c in classnames])), dim=-1)
    out = []
    for i in range(0, images.shape[0], batch_size):
        feats = F.normalize(model.encode_image(images[i:i + batch_size].type(model.dtype)), dim=-1)
        out.append(model.logit_scale.exp() * feats.float() @ text.float().t())
    return torch.cat(out)
