"""Tiny randomly initialised CLIPs and writers for OpenAI's two checkpoint formats (tests, the offline demo).

The architecture must survive OpenAI's ``build_model``, which infers everything from tensor shapes; in particular
it sets heads = width // 64 for the text transformer (and the ViT), so those are checked here, not discovered later.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence, Union

import torch
import torch.nn as nn

from ..utils.io import write_atomic
from ._import import import_clip

PathLike = Union[str, Path]


def _check_arch(vision: str, image_resolution: int, vision_layers, vision_width: int, vision_patch_size: int,
                transformer_width: int, transformer_heads: int) -> None:
    if transformer_heads != transformer_width // 64:
        raise ValueError(f"transformer_heads must be transformer_width // 64 = {transformer_width // 64} (OpenAI's "
                         f"build_model infers it that way), got {transformer_heads}")
    if vision == "vit":
        if not isinstance(vision_layers, int) or vision_width < 64 or image_resolution % vision_patch_size:
            raise ValueError("ViT needs an int vision_layers, vision_width >= 64 (heads = width // 64) and "
                             f"image_resolution divisible by vision_patch_size; got layers {vision_layers}, "
                             f"width {vision_width}, {image_resolution} px, patch {vision_patch_size}")
    elif vision == "rn":
        if image_resolution % 32 or vision_width % 2 or len(vision_layers) != 4:
            raise ValueError("ModifiedResNet needs image_resolution divisible by 32, an even vision_width and four "
                             f"stages; got {image_resolution} px, width {vision_width}, layers {vision_layers}")
    else:
        raise ValueError(f'vision must be "vit" or "rn", got {vision!r}')


def build_tiny_clip(embed_dim: int = 64, image_resolution: int = 32, vision_layers: Union[int, Sequence[int]] = 2,
                    vision_width: int = 64, vision_patch_size: int = 8, context_length: int = 77,
                    vocab_size: int = 49408, transformer_width: int = 64, transformer_heads: int = 1,
                    transformer_layers: int = 2, vision: str = "vit", seed: int = 0) -> nn.Module:
    """A small OpenAI ``CLIP`` (fp32, eval), seeded without touching the global RNG.

    ``vision="rn"`` builds a ModifiedResNet; an int ``vision_layers`` then means that many blocks in each of the
    four stages. Its feature width is 32 * vision_width, so keep it small: ``vision_layers=(1, 1, 1, 1),
    vision_width=8`` is a few MB, while width 64 is ~20M parameters.
    """
    layers = (vision_layers,) * 4 if vision == "rn" and isinstance(vision_layers, int) else vision_layers
    if vision == "rn":
        layers = tuple(int(n) for n in layers)
    _check_arch(vision, image_resolution, layers, vision_width, vision_patch_size, transformer_width,
                transformer_heads)
    clip_model_cls = import_clip().model.CLIP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip_model_cls(embed_dim, image_resolution, layers, vision_width,
                               vision_patch_size if vision == "vit" else None, context_length, vocab_size,
                               transformer_width, transformer_heads, transformer_layers)
    return model.eval()


def _openai_extras(model: nn.Module) -> dict:
    """The scalar entries OpenAI's released state dicts carry (build_model deletes them before loading)."""
    return {"input_resolution": torch.tensor(int(model.visual.input_resolution)),
            "context_length": torch.tensor(int(model.context_length)),
            "vocab_size": torch.tensor(int(model.vocab_size))}


def save_state_dict(model: nn.Module, path: PathLike) -> Path:
    """Save ``model`` as an OpenAI-format state dict (what ``torch.load`` + ``build_model`` expect)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    state.update(_openai_extras(model))
    return Path(write_atomic(path, lambda tmp: torch.save(state, tmp)))


class _JitExport(nn.Module):
    """CLIP's parameters under CLIP's names plus OpenAI's scalar buffers; traced like OpenAI's JIT releases."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        clip_cls = import_clip().model.CLIP
        self._forward = clip_cls.forward
        self._encode_image, self._encode_text = clip_cls.encode_image, clip_cls.encode_text
        for name in ("visual", "transformer", "token_embedding", "ln_final",
                     "positional_embedding", "text_projection", "logit_scale"):
            setattr(self, name, getattr(model, name))
        for name, value in _openai_extras(model).items():
            self.register_buffer(name, value)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self._encode_image(self, image)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        return self._encode_text(self, text)

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        return self._forward(self, image, text)


def save_jit_archive(model: nn.Module, path: PathLike) -> Path:
    """Save ``model`` as a traced TorchScript archive whose ``state_dict()`` OpenAI's ``build_model`` accepts."""
    export = _JitExport(model).eval()
    device = model.visual.conv1.weight.device
    resolution = int(model.visual.input_resolution)
    image = torch.zeros(1, 3, resolution, resolution, device=device)
    text = import_clip().tokenize(["a photo of a cat"]).to(device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation and tracer warnings about data-dependent branches
        traced = torch.jit.trace(export, (image, text), check_trace=False)

        def write(tmp: str) -> None:
            torch.jit.save(traced, tmp)

        return Path(write_atomic(path, write))
