"""CLIP's image side, block by block: the class token after every residual block of a ViT, in one forward.

Methods that read more than the final image feature (FSMoE's shallow-layer experts; VPT-style visual prompts such
as pMoE's, which insert tokens between blocks) share this one forward instead of forking CLIP's
``VisionTransformer``. It runs CLIP's own modules in CLIP's own order (patch embedding, class token, positional
embedding, ``ln_pre``, the residual blocks of ``visual.transformer.resblocks``, ``ln_post`` on the class token,
``proj``), so the final feature equals ``clip_model.encode_image`` exactly.

- ``LayerFeatures.layers`` [B, L, W]: the class token after each of the L blocks, **raw** (the residual stream at
  ViT width W, before ``ln_post`` and the projection), as FSMoE's authors read it. Apply ``visual.ln_post`` to a
  row yourself when a normalised one is wanted; the last row through ``ln_post`` and ``proj`` is CLIP's feature.
- ``LayerFeatures.final`` [B, E]: CLIP's image feature, L2-normalised (what every prompt classifier compares).
- ``before_block(i, x)``: an optional hook called before block i with the batch-first tokens x [B, N, W] (class
  token at position 0, then the patches); what it returns goes into the block. A VPT-style method inserts (and
  later drops) its prompt tokens there; it must keep the class token at position 0.

OpenAI-format ViTs (every ``ViT-*`` backbone and the tiny test CLIPs) are supported; a ResNet backbone
(``ModifiedResNet``) has no class token per block and gets a ``TypeError`` that names the fix.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

VIT_PARTS = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj")

BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


class LayerFeatures(NamedTuple):
    """One image-encoder forward: the raw class token after every block [B, L, W] and the normalised final [B, E]."""

    layers: torch.Tensor
    final: torch.Tensor


def check_vit(visual: nn.Module, who: str = "per-layer visual features") -> None:
    """Raise a ``TypeError`` naming the fix unless ``visual`` is an OpenAI-format CLIP ViT."""
    missing = [name for name in VIT_PARTS if not hasattr(visual, name)]
    if missing or not hasattr(visual.transformer, "resblocks"):
        kind = type(visual).__name__
        hint = " (a ResNet backbone)" if kind == "ModifiedResNet" else ""
        raise TypeError(f"{who} need a CLIP ViT image encoder, but MODEL.BACKBONE.NAME gives a {kind}{hint} without "
                        f"{', '.join(missing) or 'transformer.resblocks'}: only a ViT has a class token after "
                        "every block. Use a ViT backbone (ViT-B/16, ViT-B/32, ViT-L/14, ...).")


def vit_num_layers(visual: nn.Module) -> int:
    check_vit(visual)
    return len(visual.transformer.resblocks)


def vit_width(visual: nn.Module) -> int:
    check_vit(visual)
    return int(visual.class_embedding.shape[-1])


def vit_tokens(visual: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The tokens that enter block 0, batch-first [B, 1 + patches, W]: patch embedding, class token, positional
    embedding, ``ln_pre`` (CLIP's order), in the encoder's dtype."""
    x = visual.conv1(image.type(visual.conv1.weight.dtype))  # [B, W, grid, grid]
    x = x.flatten(2).transpose(1, 2)  # [B, grid^2, W]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(x)


def vit_head(visual: nn.Module, cls_token: torch.Tensor) -> torch.Tensor:
    """CLIP's image feature (unnormalised) from the last block's class token [B, W]: ``ln_post`` then ``proj``."""
    x = visual.ln_post(cls_token)
    return x @ visual.proj if visual.proj is not None else x


def vit_layer_features(visual: nn.Module, image: torch.Tensor,
                       before_block: Optional[BlockHook] = None) -> LayerFeatures:
    """One forward of CLIP's ViT returning every block's raw class token and the normalised final feature."""
    check_vit(visual)
    x = vit_tokens(visual, image)
    per_block = []
    for i, block in enumerate(visual.transformer.resblocks):
        if before_block is not None:
            x = before_block(i, x)
        x = block(x.transpose(0, 1)).transpose(0, 1)  # CLIP's blocks are sequence-first
        per_block.append(x[:, 0])
    final = vit_head(visual, x[:, 0])
    return LayerFeatures(torch.stack(per_block, dim=1), final / final.norm(dim=-1, keepdim=True))


class ViTLayerEncoder(nn.Module):
    """CLIP's image encoder as a module returning :class:`LayerFeatures` (it holds ``visual``, it does not copy it).

    A model that needs per-layer features calls it once per batch in place of ``clip_model.visual``; tools that
    swap a model's ``image_encoder`` (the benchmarks' per-image loop) see one call per batch as usual."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        check_vit(visual)
        self.visual = visual

    @property
    def num_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        return int(self.visual.class_embedding.shape[-1])

    @property
    def output_dim(self) -> int:
        return int(self.visual.output_dim)

    @property
    def input_resolution(self) -> int:
        return int(self.visual.input_resolution)

    def forward(self, image: torch.Tensor, before_block: Optional[BlockHook] = None) -> LayerFeatures:
        return vit_layer_features(self.visual, image, before_block)
