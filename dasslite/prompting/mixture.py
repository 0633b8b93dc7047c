"""A mixture of prompt experts over a frozen CLIP (MoCoOp's model).

Every expert is a soft prompt (``ExpertPromptLearner``) giving class features T_e [C, D]. A router on the
normalised image feature f picks the top-k experts per image with weights a (softmax over the selected logits),
and the logits are ``scale * sum_j a_j <f, T_{e_j, c}>``: the weighted sum of the selected experts' class features,
not re-normalised (as the authors do), which is the same as mixing the per-expert logits. The latter is how it is
computed: per-expert logits [B, n, C], gathered at the selected experts, weighted.

Training encodes only the experts some image of the batch selected; unselected experts get no gradient from any
loss in that step (``encode_all_experts`` encodes every expert every step, as the authors' code does at batch
size >= 4, so the text loss regularises all of them; the CE still uses each image's top-k only). Evaluation
encodes every expert once (``cached_class_features``): expert features do not depend on the image, so a test
batch costs the image encoder plus a [B, E, C] product.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .calibration import recalibrated
from .expert_prompts import ExpertPromptLearner
from .hard_prompts import HardTemplateFeatures, group_prototypes
from .losses import TEXT_LOSS_REDUCTIONS, gate_target_scores, grouped_text_loss, text_loss_scale
from .model import ClipClassifier
from .routing import Routing, TopKRouter, boosted_top_k_target, load_balancing_loss, router_load, soft_target_kl


def mix_expert_logits(per_expert: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_j weights[b, j] * per_expert[b, rows[b, j], :]``: logits [B, C] from per-expert logits [B, n, C],
    the selected rows [B, k] and their weights [B, k]."""
    picked = per_expert.gather(1, rows.unsqueeze(-1).expand(-1, -1, per_expert.shape[-1]))
    return (weights.unsqueeze(-1).to(picked.dtype) * picked).sum(1)


class MixtureOfPromptsCLIP(ClipClassifier):
    """Frozen CLIP + prompt experts + router, with MoCoOp's two auxiliary losses.

    ``prompt_learner`` (an :class:`ExpertPromptLearner` over the text-supervision classes) also holds the router
    (``prompt_learner.router``) and the re-calibration state, so the learner is the whole checkpoint.
    ``class_index`` picks the image classes out of the text-supervision classes (None: the same list; base2new
    training with virtual classes: the base classes, rows 0..C_base-1).
    ``hard_templates`` (every template of every group, in order) and ``group_sizes`` give the group prototypes
    P [G, C, D] the text loss and the gating target use; they are encoded on the first training step only.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: ExpertPromptLearner, hard_templates: Sequence[str],
                 group_sizes: Sequence[int], class_index: Optional[Sequence[int]] = None, *,
                 text_loss_weight: float = 5.0, text_temperature: float = 1.0, gate_loss_weight: float = 1.0,
                 gate_target: str = "class", gate_boost: float = 10.0, gate_temperature: float = 1.0,
                 balance_loss_weight: float = 0.0, encode_all_experts: bool = False,
                 text_loss_reduction: str = "all_experts") -> None:
        super().__init__(clip_model)
        if len(group_sizes) != prompt_learner.num_experts or sum(group_sizes) != len(hard_templates):
            raise ValueError(f"{prompt_learner.num_experts} experts need as many groups; got sizes {list(group_sizes)} "
                             f"for {len(hard_templates)} templates")
        self.prompt_learner = prompt_learner
        self.hard_features = HardTemplateFeatures(prompt_learner.classnames, hard_templates)
        self.group_sizes = list(group_sizes)
        index = None if class_index is None else torch.as_tensor(list(class_index), dtype=torch.long)
        self.register_buffer("class_index", index, persistent=False)
        self.register_buffer("prototypes", None, persistent=False)
        self.text_loss_weight, self.text_temperature = float(text_loss_weight), float(text_temperature)
        self.gate_loss_weight, self.gate_target = float(gate_loss_weight), gate_target
        self.gate_boost, self.gate_temperature = float(gate_boost), float(gate_temperature)
        self.balance_loss_weight = float(balance_loss_weight)
        self.encode_all_experts = bool(encode_all_experts)  # training: the authors' way (all experts, every step)
        if text_loss_reduction not in TEXT_LOSS_REDUCTIONS:
            raise ValueError(f'TEXT_LOSS_REDUCTION "{text_loss_reduction}" is not one of '
                             f'{", ".join(TEXT_LOSS_REDUCTIONS)}')
        self.text_loss_reduction = text_loss_reduction
        self.last_router_load: Dict[str, float] = {}  # the last training batch's router load (for the log)
        self._cached: Optional[torch.Tensor] = None
        self.routing_hook: Optional[Callable[[Routing], None]] = None  # sees every evaluation batch's routing

    @property
    def router(self) -> TopKRouter:
        return self.prompt_learner.router

    # -- text side -------------------------------------------------------------------------------------------
    def expert_features(self, experts: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Normalised class features [n, C_text, D] of ``experts`` (None: all), correction vector added first."""
        learner, encoder = self.prompt_learner, self.text_encoder
        if encoder.reference_path:  # the authors' way: every expert's full 77-token prompts, nothing shared
            prompts = learner(experts, encoder.token_embedding, full_length=True)
            n, n_cls, length, dim = prompts.shape
            tokens = learner.tokens(experts, full_length=True)
            feats = encoder(prompts.reshape(n * n_cls, length, dim), tokens.reshape(n * n_cls, length))
            feats = feats.reshape(n, n_cls, -1)
        else:  # each expert's SOS + leading context is shared by all classes: encoded once per expert
            feats = learner.encode(encoder, experts)
        return recalibrated(learner, feats)

    def select_image_classes(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.class_index is None else features[:, self.class_index]

    def group_prototypes(self) -> torch.Tensor:
        """Hard-template group prototypes [G, C_text, D] (fp32), computed once."""
        if self.prototypes is None:
            self.prototypes = group_prototypes(self.hard_features(self.text_encoder), self.group_sizes)
        return self.prototypes

    @contextmanager
    def cached_class_features(self) -> Iterator[None]:
        """Encode every expert once for the duration of the block (evaluation only: no gradients)."""
        with torch.no_grad():
            self._cached = self.select_image_classes(self.expert_features())
        try:
            yield
        finally:
            self._cached = None

    # -- image side ------------------------------------------------------------------------------------------
    def route(self, image_features: torch.Tensor) -> Routing:
        return self.router(image_features)

    def mixture_logits(self, image_features: torch.Tensor, expert_feats: torch.Tensor, routing: Routing,
                       rows: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] from the experts' class features [n, C, D]; ``rows`` [B, k] index them for each image."""
        per_expert = torch.einsum("bd,ncd->bnc", image_features, expert_feats.to(image_features.dtype))
        return self.logit_scale.exp() * mix_expert_logits(per_expert, rows, routing.weights)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feats = self.encode_image(image)
        routing = self.route(feats)
        if self.routing_hook is not None:
            self.routing_hook(routing)
        experts = self._cached if self._cached is not None else self.select_image_classes(self.expert_features())
        return self.mixture_logits(feats, experts, routing, routing.indices)

    def forward_train(self, image: torch.Tensor, label: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.encode_image(image)
        routing = self.route(feats)
        self.last_router_load = router_load(routing)
        if self.encode_all_experts:
            used = torch.arange(self.prompt_learner.num_experts, device=routing.indices.device)
        else:
            used = routing.used_experts()
        learned = self.expert_features(used)  # [n, C_text, D]
        rows = torch.searchsorted(used, routing.indices)
        logits = self.mixture_logits(feats, self.select_image_classes(learned), routing, rows)
        out = {"logits": logits, "loss_ce": F.cross_entropy(logits, label)}
        if self.text_loss_weight > 0:
            out["loss_text"] = self.text_loss_weight * self.text_loss(learned, used)
        if self.gate_loss_weight > 0:
            out["loss_gate"] = self.gate_loss_weight * self.gate_loss(feats, routing, label)
        if self.balance_loss_weight > 0:
            out["loss_balance"] = self.balance_loss_weight * load_balancing_loss(routing)
        return out

    # -- auxiliary losses ------------------------------------------------------------------------------------
    def text_loss(self, learned: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Semantically grouped text loss: each learned class feature of expert e must pick its own class among
        group e's hard prototypes of all text classes; reduced over all experts (``all_experts``, the authors'
        scaling: an expert not encoded counts as zero features) or over the encoded ones (``encoded``)."""
        prototypes = self.group_prototypes()[experts]
        every = self.prompt_learner.num_experts if self.text_loss_reduction == "all_experts" else 0
        return grouped_text_loss(learned, prototypes, text_loss_scale(self.text_temperature, self.logit_scale), every)

    def label_rows(self, label: torch.Tensor) -> torch.Tensor:
        """Each image label's row in the text-class list (labels and rows are aligned by construction)."""
        return label if self.class_index is None else self.class_index[label]

    def gate_loss(self, image_features: torch.Tensor, routing: Routing, label: torch.Tensor) -> torch.Tensor:
        """Hard-prompt-guided gating: KL(target || softmax(router logits over all experts)), the target being the
        image's similarity to each group's hard prototypes with the top-k boosted (``boosted_top_k_target``)."""
        rows = self.label_rows(label) if self.gate_target == "class" else None
        scores = gate_target_scores(image_features, self.group_prototypes(), rows)
        target = boosted_top_k_target(scores, self.router.k, self.gate_boost, self.gate_temperature)
        return soft_target_kl(routing.logits, target)
