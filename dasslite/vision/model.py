"""The pMoE-style model: frozen experts, their deep prompts and dispatchers, and one of two heads.

Heads (``HEADS``):
  - ``linear``: a linear classifier on the fused expert features (the VTAB-1k / FGVC protocol). Its weights
    belong to the training classes, so it cannot evaluate other classes (base-to-new needs ``clip``).
  - ``clip``: the fused feature is projected into CLIP's joint space and classified by cosine against the text
    features of the class names, through the shared text encoder: a CoOp-style learnable context
    (``ContextPromptLearner``) when N_CTX > 0, else the hand-written template encoded once. With the CLIP expert
    present and ``joint_residual``, the joint feature is CLIP's own projected image feature plus a zero-initialised
    projection of the fused feature, so training starts from (prompted) CLIP.
Fusion of the per-expert pooled features (``FUSIONS``): ``concat`` or ``mean`` (equal widths only).
Only ``prompt_learner`` (EPTs, dispatchers, head, text context) is trained and checkpointed.
"""
from __future__ import annotations

import json
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslite.prompting.model import PromptCLIP, encode_class_templates, l2_normalize

from .experts import ClipVisualExpert, FrozenViTExpert
from .preprocess import ExpertInput
from .vpt import DispatchRecorder, ExpertPromptTokens, build_dispatchers, prompted_features

HEADS = ("linear", "clip")
FUSIONS = ("concat", "mean")


def fused_width(widths: Sequence[int], fusion: str) -> int:
    if fusion not in FUSIONS:
        raise ValueError(f'TRAINER.PMOE.FUSION "{fusion}" is not one of {", ".join(FUSIONS)}')
    if fusion == "mean" and len(set(widths)) > 1:
        raise ValueError(f"TRAINER.PMOE.FUSION mean needs experts of one width, got {list(widths)}; use concat")
    return sum(widths) if fusion == "concat" else widths[0]


class PMoELearner(nn.Module):
    """Everything that learns: ``prompts`` (EPTs), ``dispatchers``, the head (``classifier`` or ``joint_proj``),
    the optional ``text_context``, and ``expert_definition`` (experts and prompt layout, checked on load)."""

    def __init__(self, experts: Sequence[FrozenViTExpert], num_classes: int, head: str, num_prompts: int,
                 prompt_layers: Sequence[int], dispatcher: str, dispatcher_options: dict, fusion: str = "concat",
                 prompt_dropout: float = 0.0, joint_dim: int = 0, joint_residual: bool = True,
                 text_context: Optional[nn.Module] = None) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f'TRAINER.PMOE.HEAD "{head}" is not one of {", ".join(HEADS)}')
        widths = [e.width for e in experts]
        self.head, self.fusion, self.num_prompts = head, fusion, num_prompts
        width = fused_width(widths, fusion)
        if num_prompts < 0:
            raise ValueError(f"TRAINER.PMOE.N_PROMPTS must be >= 0, got {num_prompts}")
        if num_prompts and prompt_layers:
            self.prompts: Optional[ExpertPromptTokens] = ExpertPromptTokens(
                widths, [e.patch_size for e in experts], prompt_layers, num_prompts)
            self.dispatchers: Optional[nn.ModuleList] = build_dispatchers(dispatcher, widths, prompt_layers,
                                                                          **dispatcher_options)
        else:
            self.prompts, self.dispatchers = None, None
        self.prompt_dropout = nn.Dropout(prompt_dropout) if prompt_dropout > 0 else None
        self.clip_index = next((k for k, e in enumerate(experts) if isinstance(e, ClipVisualExpert)), None)
        self.joint_residual = bool(joint_residual and self.clip_index is not None)
        if head == "linear":
            self.classifier = nn.Linear(width, num_classes)
        else:
            self.joint_proj = nn.Linear(width, joint_dim)
            if self.joint_residual:
                nn.init.zeros_(self.joint_proj.weight)
                nn.init.zeros_(self.joint_proj.bias)
        self.text_context = text_context
        definition = json.dumps({"experts": [e.name for e in experts], "widths": widths, "head": head,
                                 "n_prompts": num_prompts, "layers": list(prompt_layers), "dispatcher": dispatcher,
                                 "fusion": fusion}, sort_keys=True).encode("utf-8")
        self.register_buffer("expert_definition", torch.tensor(list(definition), dtype=torch.uint8))

    @property
    def class_dependent_keys(self):
        """Keys rebuilt from the current classes on load (the text context's class-name tokens)."""
        if self.text_context is None:
            return ()
        return tuple(f"text_context.{k}" for k in self.text_context.class_dependent_keys)

    def fuse(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = [f.float() for f in features]
        return torch.cat(feats, dim=-1) if self.fusion == "concat" else torch.stack(feats).mean(0)

    def encode(self, text_encoder: nn.Module) -> torch.Tensor:
        return self.text_context.encode(text_encoder)


def decode_definition(buffer: torch.Tensor) -> dict:
    return json.loads(bytes(buffer.cpu().tolist()).decode("utf-8"))


class PMoECLIP(PromptCLIP):
    """Frozen experts (``experts``, each with its ``inputs`` conversion) + ``prompt_learner`` + CLIP's text side.

    ``routing_hook(weights [B, K+2], recorder)`` is called after every forward when set (expert usage)."""

    def __init__(self, clip_model: nn.Module, experts: Sequence[FrozenViTExpert], learner: PMoELearner,
                 classnames: Sequence[str], pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 template: str = "a photo of a {}.") -> None:
        super().__init__(clip_model, learner)
        self.experts = nn.ModuleList(experts)
        self.inputs = nn.ModuleList(
            ExpertInput(pixel_mean, pixel_std, e.mean, e.std, e.input_size, e.interpolation) for e in experts)
        self.expert_names = [e.name for e in experts]
        self.routing_hook: Optional[Callable] = None
        if learner.head == "clip" and learner.text_context is None:
            self.register_buffer("hard_text_features", encode_class_templates(self.text_encoder, classnames,
                                                                              [template]), persistent=False)

    def train(self, mode: bool = True):
        """Only the learner follows ``mode``: the frozen experts always run in eval mode (no dropout, fixed norms)."""
        super().train(mode)
        self.experts.eval()
        return self

    def expert_features(self, image: torch.Tensor) -> List[torch.Tensor]:
        learner = self.prompt_learner
        recorder = DispatchRecorder(self.expert_names) if self.routing_hook is not None else None
        features = prompted_features(self.experts, [convert(image) for convert in self.inputs], learner.prompts,
                                     learner.dispatchers, learner.prompt_dropout, on_dispatch=recorder)
        if recorder is not None:
            self.routing_hook(recorder.mean(), recorder)
        return features

    def compute_class_features(self) -> Optional[torch.Tensor]:
        learner = self.prompt_learner
        if learner.head == "linear":
            return None
        if learner.text_context is None:
            return self.hard_text_features
        return super().compute_class_features()

    def joint_features(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised image features in CLIP's joint space [B, E]."""
        learner = self.prompt_learner
        joint = learner.joint_proj(learner.fuse(features))
        if learner.joint_residual:
            clip_expert = self.experts[learner.clip_index]
            joint = joint + clip_expert.project(features[learner.clip_index]).float()
        return l2_normalize(joint)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        features = self.expert_features(image)
        if learner.head == "linear":
            return learner.classifier(learner.fuse(features))
        text = self.class_features().float()
        return self.logit_scale.exp().float() * self.joint_features(features) @ text.t()

    def forward_train(self, image: torch.Tensor, label: torch.Tensor):
        logits = self(image)
        return {"logits": logits, "loss_ce": F.cross_entropy(logits.float(), label)}
