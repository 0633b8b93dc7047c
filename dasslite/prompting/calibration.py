"""Re-calibration pieces of LASP (reused by MoCoOp): a learnable correction vector added to every class text
feature before normalisation, and tuning of the ViT image encoder's block LayerNorms at a reduced learning rate."""
from __future__ import annotations

from typing import Collection, Dict, Iterable, List

import torch
import torch.nn as nn

from .model import l2_normalize


class FeatureCorrection(nn.Module):
    """``features + w`` with one learnable vector ``w`` [1, E] shared by all classes, zero-initialised (so training
    starts from the unmodified features). Apply it to raw text features, before L2 normalisation."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.vector = nn.Parameter(torch.zeros(1, dim, dtype=dtype))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.vector


def vit_block_layernorms(visual: nn.Module) -> nn.ModuleList:
    """``ln_1`` and ``ln_2`` of every residual block of a CLIP VisionTransformer, in block order (the LayerNorms
    LASP tunes; ``ln_pre``/``ln_post`` and the text side stay frozen). The modules are shared, not copied."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not all(hasattr(b, "ln_1") and hasattr(b, "ln_2") for b in blocks):
        raise TypeError(f"LayerNorm tuning needs a ViT image encoder with transformer.resblocks[*].ln_1/ln_2; "
                        f"got {type(visual).__name__} (a ResNet backbone has none)")
    layers: List[nn.Module] = []
    for block in blocks:
        layers += [block.ln_1, block.ln_2]
    return nn.ModuleList(layers)


def parameter_names(model: nn.Module, modules: Iterable[nn.Module]) -> frozenset:
    """The names under which ``model.named_parameters()`` reports the parameters of ``modules``."""
    ids = {id(p) for m in modules for p in m.parameters()}
    return frozenset(n for n, p in model.named_parameters() if id(p) in ids)


def scaled_lr_param_groups(model: nn.Module, scaled_names: Collection[str], lr: float,
                           multiplier: float) -> List[Dict]:
    """Optimizer groups over the trainable parameters: ``{params}`` at the optimizer's LR first, then
    ``{params, lr: multiplier * lr}`` for the ones named in ``scaled_names`` (omitted when none is trainable).
    The first group's LR is the one the training log shows."""
    main: List[nn.Parameter] = []
    scaled: List[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (scaled if name in scaled_names else main).append(param)
    groups: List[Dict] = [{"params": main}]
    if scaled:
        groups.append({"params": scaled, "lr": multiplier * lr})
    return groups


def recalibrated(learner: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Normalised class features from raw ones: ``learner.correction`` (if any) added first, then L2 normalised."""
    if learner.correction is not None:
        features = learner.correction(features)
    return l2_normalize(features)


def add_recalibration_keys(node, finetune_vit_ln: bool = False) -> None:
    """The config keys of LASP's re-calibration, shared by the methods that use it (LASP, MoCoOp)."""
    node.ENABLE_CORRECTION = True  # learnable vector added to the class text features before normalisation
    node.FINETUNE_VIT_LN = finetune_vit_ln  # tune ln_1/ln_2 of every ViT block (the published recipes turn it on)
    node.VIT_LN_LR_MULT = 0.1  # their learning rate, relative to OPTIM.LR


def attach_recalibration(learner: nn.Module, clip_model: nn.Module, correction: bool, tune_vit_ln: bool) -> None:
    """Give ``learner`` (the checkpointed module) ``correction`` (a :class:`FeatureCorrection` or None) and, when
    tuned, ``visual_ln`` (the image encoder's block LayerNorms, shared with it, so they are checkpointed too)."""
    embed_dim = clip_model.text_projection.shape[1]
    learner.correction = FeatureCorrection(embed_dim, clip_model.dtype) if correction else None
    if tune_vit_ln:
        learner.visual_ln = vit_block_layernorms(clip_model.visual)


class VitLayerNormTuning:
    """Trainer mixin (before the base trainer in the MRO): makes the learner's ``visual_ln`` trainable when
    ``FINETUNE_VIT_LN`` is set, in a second optimizer group at ``VIT_LN_LR_MULT`` x LR. Call
    ``track_vit_layernorms(model, learner)`` in ``build_custom_clip``."""

    _vit_ln_names: frozenset = frozenset()

    def track_vit_layernorms(self, model: nn.Module, learner: nn.Module) -> None:
        tuned = self.method_cfg.FINETUNE_VIT_LN
        self._vit_ln_names = parameter_names(model, learner.visual_ln) if tuned else frozenset()

    def is_trainable(self, param_name: str) -> bool:
        return super().is_trainable(param_name) or param_name in self._vit_ln_names

    def image_cache_refusal(self):
        if self.method_cfg.FINETUNE_VIT_LN:
            return f"TRAINER.{self.CFG_NODE}.FINETUNE_VIT_LN tunes the image encoder"
        return super().image_cache_refusal()

    def optim_param_groups(self):
        return scaled_lr_param_groups(self.model, self._vit_ln_names, self.cfg.OPTIM.LR, self.method_cfg.VIT_LN_LR_MULT)
