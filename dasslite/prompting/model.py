"""CLIP classifiers built from a frozen CLIP: one image path, one text path (the shared TextEncoder), one logit."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslite.clip import TextEncoder, tokenize


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class ClipClassifier(nn.Module):
    """Frozen CLIP image encoder + text encoder + logit scale; subclasses decide where class features come from."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype
        # The image-feature cache (dasslite.features): while ``image_outputs_given`` the input of ``forward`` is the
        # image encoder's stored output instead of an image; ``image_output_hook`` sees every encoder output.
        self.image_outputs_given = False
        self.image_output_hook: Optional[Callable[[torch.Tensor], None]] = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features [B, E] (normalised here in both the cached and the uncached path)."""
        if self.image_outputs_given:
            return l2_normalize(image)
        raw = self.image_encoder(image.type(self.dtype))
        if self.image_output_hook is not None:
            self.image_output_hook(raw)
        return l2_normalize(raw)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities [B, C]."""
        return self.logit_scale.exp() * image_features @ text_features.t()

    def class_features(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_image(image), self.class_features())

    def forward_train(self, image: torch.Tensor, label: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Training forward: a dict with ``logits`` and the loss terms (``loss_*``) the trainer sums."""
        logits = self(image)
        return {"logits": logits, "loss_ce": F.cross_entropy(logits, label)}


@torch.no_grad()
def encode_class_templates(text_encoder: TextEncoder, classnames: Sequence[str], templates: Sequence[str],
                           device: Optional[torch.device] = None) -> torch.Tensor:
    """Hand-crafted class features [C, E]: each template filled with each class name, normalised, averaged over
    templates and normalised again (CLIP's prompt ensembling; one template = plain zero-shot)."""
    feats = []
    for template in templates:
        prompts = [template.format(name.replace("_", " ")) for name in classnames]
        tokens = tokenize(prompts)
        if device is not None:
            tokens = tokens.to(device)
        feats.append(l2_normalize(text_encoder.encode_tokens(tokens).float()))
    return l2_normalize(torch.stack(feats).mean(0))


class HardPromptCLIP(ClipClassifier):
    """Zero-shot CLIP: class features from hand-written templates, encoded once."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], templates: List[str]) -> None:
        super().__init__(clip_model)
        self.register_buffer("text_features", encode_class_templates(self.text_encoder, classnames, templates)
                             .to(self.dtype), persistent=False)

    def class_features(self) -> torch.Tensor:
        return self.text_features


class PromptCLIP(ClipClassifier):
    """CLIP whose class features come from a learnable ``prompt_learner`` (CoOp and its descendants).

    The prompt learner's output does not depend on the image, so during evaluation the class features are
    encoded once (``cached_class_features``) instead of once per test batch.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module) -> None:
        super().__init__(clip_model)
        self.prompt_learner = prompt_learner
        self._cached: Optional[torch.Tensor] = None

    def compute_class_features(self) -> torch.Tensor:
        return l2_normalize(self.prompt_learner.encode(self.text_encoder))

    def class_features(self) -> torch.Tensor:
        if self._cached is not None:
            return self._cached
        return self.compute_class_features()

    @contextmanager
    def cached_class_features(self) -> Iterator[None]:
        """Encode the class prompts once for the duration of the block (evaluation only: no gradients)."""
        with torch.no_grad():
            self._cached = self.compute_class_features()
        try:
            yield
        finally:
            self._cached = None
