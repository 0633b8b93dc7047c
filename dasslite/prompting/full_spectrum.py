"""FSMoE's full-spectrum conditional prompts (Xie, Geng et al., Neural Networks 196, 2025): CoCoOp's per-image
context, with two token groups fed by different depths of the image encoder.

For an image x with raw class tokens F_1..F_L (every ViT block, ``dasslite.clip.visual``) and normalised final
feature F_L' (CLIP's image feature):
- high-level tokens: ``v_j + h(x)``, ``h`` a meta-net (Linear -> ReLU -> Linear, hidden 2 x embed) on F_L';
- low-level tokens: ``v_j + l(x)``, ``l`` a sparse MoE over the selected blocks' class tokens (``layer_moe``):
  router on F_L', top-k of the layers, one expert per layer, gate-weighted sum.
The prompt is ``[SOS] <tokens of both groups, in TOKEN_ORDER> <class name> . [EOS]``; logits are CLIP's scaled
cosines of F_L' with each of the image's own C class features.

The B x C prompts of a batch are encoded in one chunked text-encoder call with each image's SOS + context encoded
once (``ContextPromptLearner.encode_per_image``); evaluation encodes the same B x C per test batch and nothing
else (the class features depend on the image, so nothing can be cached).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslite.clip.visual import LayerFeatures, ViTLayerEncoder, check_vit

from .layer_moe import SparseLayerMoE
from .model import ClipClassifier, l2_normalize
from .prompt_learner import ContextPromptLearner
from .routing import Routing
from .routing_consistency import RC_TARGETS, consistency_features, routing_consistency_loss

TOKEN_ORDERS = ("low_high", "high_low")


def token_groups(n_ctx: int, n_low: int, order: str) -> Tuple[list, list]:
    """Context slots (0-indexed) of the low- and high-level tokens: ``low_high`` puts the n_low low-level tokens
    first (the authors' layout), ``high_low`` last (their order ablation)."""
    if order not in TOKEN_ORDERS:
        raise ValueError(f'TOKEN_ORDER "{order}" is not one of {", ".join(TOKEN_ORDERS)}')
    if not 1 <= n_low < n_ctx:
        raise ValueError(f"the low-level tokens ({n_low}) must be at least 1 and fewer than the {n_ctx} context "
                         "tokens (both groups need a token): check N_CTX_LOW and N_CTX / CTX_INIT")
    slots = list(range(n_ctx))
    if order == "low_high":
        return slots[:n_low], slots[n_low:]
    return slots[n_ctx - n_low:], slots[:n_ctx - n_low]


class FullSpectrumPromptLearner(ContextPromptLearner):
    """The checkpointed state: the shared context, the meta-net, and the layer MoE (router + experts + layer list).

    ``layers`` None: every block but the last (the authors' default, all shallow blocks). ``n_low`` < 0: half the
    context (``n_ctx // 2``). Widths are multiples: experts' hidden = ``expert_hidden_mult`` x ViT width, router's
    and meta-net's hidden = their multiple x the embedding width (2 each, as released; router 0 = a linear router).
    ``expert_rank`` > 0: low-rank experts. The meta-net and experts are in CLIP's dtype, the router in fp32.
    """

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int = 8, ctx_init: str = "",
                 n_low: int = -1, token_order: str = "low_high", layers: Optional[Sequence[int]] = None,
                 top_k: int = 5, expert_hidden_mult: float = 2.0, expert_rank: int = 0,
                 router_hidden_mult: float = 2.0, metanet_hidden_mult: float = 2.0) -> None:
        check_vit(clip_model.visual, "FSMoE's shallow-layer experts")
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init)
        visual = clip_model.visual
        n_blocks, vit_width = len(visual.transformer.resblocks), int(visual.class_embedding.shape[-1])
        embed, ctx_dim, dtype = visual.output_dim, self.ctx.shape[-1], clip_model.dtype
        layers = list(range(n_blocks - 1)) if not layers else [int(i) for i in layers]
        bad = [i for i in layers if not 0 <= i < n_blocks]
        if bad or not layers:
            raise ValueError(f"LAYERS {layers}: blocks are 0-indexed and this image encoder has {n_blocks} "
                             f"(valid: 0..{n_blocks - 1}; empty = all shallow blocks 0..{n_blocks - 2})")
        low, high = token_groups(self.n_ctx, self.n_ctx // 2 if n_low < 0 else n_low, token_order)
        is_low = torch.zeros(self.n_ctx, 1, dtype=dtype)
        is_low[low] = 1
        self.register_buffer("low_mask", is_low, persistent=False)  # [M, 1]: 1 at the low-level slots
        self.register_buffer("high_mask", 1 - is_low, persistent=False)
        hidden = max(int(round(metanet_hidden_mult * embed)), 1)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, ctx_dim)),
        ])).to(dtype)
        self.moe = SparseLayerMoE(layers, vit_width, embed, ctx_dim, k=top_k,
                                  expert_hidden=max(int(round(expert_hidden_mult * vit_width)), 1),
                                  router_hidden=int(round(router_hidden_mult * embed)), rank=expert_rank,
                                  dtype=dtype)
        self.low_slots, self.high_slots = low, high
        print(f"FSMoE: {len(low)} low-level tokens at slots {low}, {len(high)} high-level at {high}; "
              f"{len(layers)} layer experts (blocks {layers}), top-{top_k}")

    @property
    def layers(self) -> list:
        return self.moe.layers.tolist()

    def contexts(self, features: LayerFeatures) -> Tuple[torch.Tensor, torch.Tensor, Routing]:
        """Each image's context [B, M, D], with the meta-net output h [B, D] and the MoE's routing."""
        meta = self.meta_net(features.final.type(self.meta_net.linear1.weight.dtype))  # [B, D]
        low, routing = self.moe(features.layers, features.final)  # [B, D]
        ctx = self.ctx + self.low_mask * low.type(self.ctx.dtype)[:, None] + self.high_mask * meta[:, None]
        return ctx, meta, routing


class FullSpectrumCLIP(ClipClassifier):
    """Frozen CLIP + full-spectrum prompts; training adds ``RC_WEIGHT`` x the routing-consistency loss.

    ``image_encoder`` is a :class:`ViTLayerEncoder`: one forward per batch gives every block's class token and the
    final feature. ``routing_hook`` (None by default) sees each evaluation batch's routing (expert-usage analysis).
    """

    instance_conditioned = True

    def __init__(self, clip_model: nn.Module, prompt_learner: FullSpectrumPromptLearner,
                 chunk_size: Optional[int] = None, *, rc_weight: float = 0.1, rc_target: str = "router_logits",
                 rc_negatives: int = 10, rc_temperature: float = 0.01, rc_similarity: str = "cos",
                 rc_self_positive: bool = True, rc_probs_temperature: float = 0.01) -> None:
        super().__init__(clip_model)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None (all prompts at once), got {chunk_size}")
        if rc_target not in RC_TARGETS:
            raise ValueError(f'RC_TARGET "{rc_target}" is not one of {", ".join(RC_TARGETS)}')
        self.image_encoder = ViTLayerEncoder(clip_model.visual)
        self.text_encoder.chunk_size = chunk_size
        self.prompt_learner = prompt_learner
        self.rc_weight, self.rc_target = float(rc_weight), rc_target
        self.rc_negatives, self.rc_temperature = int(rc_negatives), float(rc_temperature)
        self.rc_similarity, self.rc_self_positive = rc_similarity, bool(rc_self_positive)
        self.rc_probs_temperature = float(rc_probs_temperature)
        self.routing_hook: Optional[Callable[[Routing], None]] = None

    def encode_layers(self, image: torch.Tensor) -> LayerFeatures:
        return self.image_encoder(image.type(self.dtype))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features [B, E] (the final feature of the per-layer forward)."""
        return self.encode_layers(image).final

    def conditioned_logits(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Routing]:
        """Logits [B, C] (each image against its own class features), the meta-net output and the routing."""
        features = self.encode_layers(image)
        learner = self.prompt_learner
        ctx, meta, routing = learner.contexts(features)
        text = l2_normalize(learner.encode_per_image(self.text_encoder, ctx))  # [B, C, E]
        final = features.final
        logits = self.logit_scale.exp() * torch.einsum("be,bce->bc", final, text.type(final.dtype))
        return logits, meta, routing

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits, _, routing = self.conditioned_logits(image)
        if self.routing_hook is not None:
            self.routing_hook(routing)
        return logits

    def forward_train(self, image: torch.Tensor, label: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits, meta, routing = self.conditioned_logits(image)
        out = {"logits": logits, "loss_ce": F.cross_entropy(logits, label)}
        if self.rc_weight > 0:
            target = consistency_features(self.rc_target, meta, routing, self.rc_probs_temperature)
            out["loss_rc"] = self.rc_weight * routing_consistency_loss(
                target, label, self.rc_negatives, self.rc_temperature, self.rc_similarity, self.rc_self_positive)
        return out
