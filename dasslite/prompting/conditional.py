"""Instance-conditioned prompts (CoCoOp and later per-image methods): the context depends on the image.

A small meta-net maps each image's normalised feature to a shift of the shared context, so every image gets its own
C class prompts. The B x C prompts of a batch go through the shared ``TextEncoder`` as one batch (split into chunks
of ``chunk_size`` prompts to bound memory), never through a Python loop over the images.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .model import ClipClassifier, l2_normalize
from .prompt_learner import ContextPromptLearner


class ConditionalPromptLearner(ContextPromptLearner):
    """CoOp's shared context plus a meta-net: ``ctx_b = ctx + meta_net(f_b)`` for the normalised image feature f_b.

    ``meta_net`` is Linear(vis_dim, vis_dim // 16) -> ReLU -> Linear(vis_dim // 16, ctx_dim), in CLIP's dtype (fp16
    for PREC fp16). Its sub-module names (``linear1``, ``relu``, ``linear2``) give the checkpoint keys CoCoOp uses.
    The class-name buffers are rebuilt from the current classes on load, as for CoOp.
    """

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int = 16, ctx_init: str = "",
                 class_token_position: str = "end") -> None:
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init, csc=False,
                         class_token_position=class_token_position)
        vis_dim = clip_model.visual.output_dim
        ctx_dim = self.ctx.shape[-1]
        hidden = max(vis_dim // 16, 1)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, ctx_dim)),
        ])).to(clip_model.dtype)

    def contexts(self, image_features: torch.Tensor) -> torch.Tensor:
        """Each image's context [B, M, D]: the shared context shifted by the meta-net's output for that image."""
        shift = self.meta_net(image_features.type(self.meta_net.linear1.weight.dtype))  # [B, D]
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings [B, C, L, D] for normalised image features [B, E]: image b's context in every class."""
        ctx = self.contexts(image_features)
        return self.assemble(ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1))

    def encode_conditioned(self, text_encoder: nn.Module, image_features: torch.Tensor) -> torch.Tensor:
        """Raw class features [B, C, E] per image. With the class name at the end, SOS + image b's context is
        shared by its C prompts and encoded once per image (``TextEncoder.encode_prefixed`` with B prefixes)."""
        return self.encode_per_image(text_encoder, self.contexts(image_features))


class ConditionalPromptCLIP(ClipClassifier):
    """CLIP whose class features are computed per image from a ``ConditionalPromptLearner`` (CoCoOp).

    There is no class-feature cache: the features depend on the image, so evaluation encodes B x C prompts per test
    batch (``instance_conditioned`` tells tools such as the benchmarks so). ``chunk_size`` (None: all at once) is the
    most prompts the text encoder runs at a time.
    """

    instance_conditioned = True

    def __init__(self, clip_model: nn.Module, prompt_learner: ConditionalPromptLearner,
                 chunk_size: Optional[int] = None) -> None:
        super().__init__(clip_model)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None (all prompts at once), got {chunk_size}")
        self.text_encoder.chunk_size = chunk_size
        self.prompt_learner = prompt_learner

    def instance_class_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """Normalised class features [B, C, E], one set per image, from normalised image features [B, E]."""
        return l2_normalize(self.prompt_learner.encode_conditioned(self.text_encoder, image_features))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits [B, C]: each image against its own class features."""
        image_features = self.encode_image(image)
        text_features = self.instance_class_features(image_features)
        scores = torch.einsum("be,bce->bc", image_features, text_features.type(image_features.dtype))
        return self.logit_scale.exp() * scores
