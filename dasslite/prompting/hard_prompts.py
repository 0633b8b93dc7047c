"""Hard-template class features for text supervision: encoded once by the frozen text encoder, kept per template
(LASP's loss) or averaged per template group (MoCoOp's group prototypes)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from .model import encode_class_templates, l2_normalize


def encode_template_features(text_encoder: nn.Module, classnames: Sequence[str], templates: Sequence[str],
                             device: Optional[torch.device] = None) -> torch.Tensor:
    """Per-template class features [T, C, E], each L2-normalised, fp32 (no gradients)."""
    return torch.stack([encode_class_templates(text_encoder, classnames, [t], device) for t in templates])


def group_prototypes(features: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Per-group prototypes [G, C, E] of per-template features [T, C, E]: the mean over each consecutive run of
    ``sizes`` templates, re-normalised (what ``encode_class_templates`` gives for that group's templates)."""
    if sum(sizes) != features.shape[0] or any(s < 1 for s in sizes):
        raise ValueError(f"group sizes {list(sizes)} do not partition {features.shape[0]} templates")
    return torch.stack([l2_normalize(chunk.mean(0)) for chunk in torch.split(features, list(sizes), dim=0)])


class HardTemplateFeatures(nn.Module):
    """``templates`` x ``classnames`` encoded by the frozen text encoder on first use, then reused.

    Encoding is deferred to the first ``forward(text_encoder)`` (a training step), so building a model for
    evaluation only never pays for it. The features are a non-persistent buffer: never in a checkpoint, moved by
    ``.to()``. They are computed outside autocast, in the text encoder's own precision, and returned as fp32.
    """

    def __init__(self, classnames: Sequence[str], templates: Sequence[str]) -> None:
        super().__init__()
        if not templates:
            raise ValueError("HardTemplateFeatures needs at least one template")
        self.classnames: List[str] = list(classnames)
        self.templates: List[str] = list(templates)
        self.register_buffer("features", None, persistent=False)

    @property
    def shape(self):
        return (len(self.templates), len(self.classnames))

    def forward(self, text_encoder: nn.Module) -> torch.Tensor:
        """Per-template features [T, C, E] (normalised, fp32)."""
        if self.features is None:
            device = text_encoder.token_embedding.weight.device
            with torch.autocast(device.type, enabled=False):
                self.features = encode_template_features(text_encoder, self.classnames, self.templates, device)
        return self.features
