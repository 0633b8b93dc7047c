"""Frozen ViT experts behind one token-level interface, so prompts can be inserted between any two blocks.

An expert exposes ``embed(pixels)`` -> tokens [B, T, D] (prefix tokens first: CLS and any register tokens, then
patches), ``run_block(i, x)`` (block i, batch-first), ``pool(x, num_prompts)`` -> the expert's own final feature
[B, D] with the ``num_prompts`` prompt tokens that sit right after the prefix removed, and its preprocessing
(``mean``, ``std``, ``input_size``). ``forward(pixels)`` is the expert's native forward (what its library computes
without prompts), for equality checks.

- ``ClipVisualExpert``: OpenAI CLIP's visual tower (``clip_model.visual``); ``project`` maps the pooled feature
  into CLIP's joint space (``@ proj``). Its blocks are sequence-first; ``run_block`` transposes.
- ``TimmViTExpert``: a timm ``VisionTransformer`` created by model name (``timm.create_model``, never with
  ``pretrained=True`` unless asked), optionally loaded from a local checkpoint file through timm's own loader and
  ViT key filter (handles DINO / MAE / MoCo-v3 style ``state_dict``/``model`` nesting, ``module.`` prefixes and
  position-embedding resizing). Pooling is the model's own ``forward_head(pre_logits=True)``.
timm is imported where a timm expert is built, not at module import: ``train.py`` imports every trainer, and a
CoOp run should not pay for importing timm.
"""
from __future__ import annotations

import ast
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

CLIP_EXPERT = "clip"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ExpertCheckpointError(ValueError):
    """A local expert checkpoint that does not fit its expert (the message names the file and the expert)."""


class FrozenViTExpert(nn.Module):
    """Common interface; subclasses set ``name``, ``width``, ``depth``, ``num_prefix_tokens``, ``patch_size``,
    ``mean``, ``std``, ``input_size`` and ``interpolation``."""

    name: str
    width: int
    depth: int
    num_prefix_tokens: int
    patch_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    input_size: Tuple[int, int]
    interpolation: str = "bicubic"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def drop_prompts(self, x: torch.Tensor, num_prompts: int) -> torch.Tensor:
        """Tokens without the ``num_prompts`` prompt tokens placed after the prefix tokens."""
        if not num_prompts:
            return x
        n = self.num_prefix_tokens
        return torch.cat([x[:, :n], x[:, n + num_prompts:]], dim=1)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """All blocks without prompts, through this interface (equals ``forward`` after ``pool``)."""
        x = self.embed(pixels)
        for i in range(self.depth):
            x = self.run_block(i, x)
        return x


class ClipVisualExpert(FrozenViTExpert):
    """OpenAI CLIP's ``VisionTransformer`` as an expert (the pooled feature is ``ln_post(CLS)``, before ``proj``)."""

    def __init__(self, visual: nn.Module, name: str = CLIP_EXPERT) -> None:
        super().__init__()
        if not hasattr(visual, "transformer") or not hasattr(visual, "class_embedding"):
            raise TypeError(f"expert {name!r}: CLIP's visual tower is not a ViT ({type(visual).__name__}); pMoE "
                            "prompts need a ViT backbone (ViT-B/16, ViT-B/32, ViT-L/14)")
        self.visual = visual
        self.name = name
        self.width = visual.class_embedding.shape[0]
        self.depth = len(visual.transformer.resblocks)
        self.num_prefix_tokens = 1
        self.patch_size = visual.conv1.kernel_size[0]
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.input_size = (visual.input_resolution, visual.input_resolution)
        self.output_dim = visual.output_dim

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(pixels.type(self.dtype))  # [B, D, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, g*g, D]
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    def run_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.visual.transformer.resblocks[index](x.permute(1, 0, 2)).permute(1, 0, 2)

    def pool(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        return self.visual.ln_post(x[:, 0])

    def project(self, feature: torch.Tensor) -> torch.Tensor:
        """Pooled feature [B, D] -> CLIP's joint space [B, E] (unnormalised, as ``clip_model.visual`` returns)."""
        return feature @ self.visual.proj

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels.type(self.dtype))


class TimmViTExpert(FrozenViTExpert):
    """A timm ``VisionTransformer`` (classifier head removed) as an expert."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        needed = ("patch_embed", "_pos_embed", "norm_pre", "blocks", "norm", "forward_head", "num_prefix_tokens")
        missing = [a for a in needed if not hasattr(model, a)]
        if missing:
            raise TypeError(f"expert {name!r}: timm model {type(model).__name__} is not a VisionTransformer-like "
                            f"model (missing {', '.join(missing)}); pMoE needs a ViT with CLS/patch tokens")
        import timm.data

        self.model = model
        self.name = name
        self.width = model.embed_dim
        self.depth = len(model.blocks)
        self.num_prefix_tokens = model.num_prefix_tokens
        patch = model.patch_embed.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        data_cfg = timm.data.resolve_model_data_config(model)
        self.mean, self.std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        self.input_size = tuple(model.patch_embed.img_size)
        interpolation = data_cfg.get("interpolation", "bicubic")
        self.interpolation = interpolation if interpolation in ("bicubic", "bilinear", "nearest") else "bicubic"

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m._pos_embed(m.patch_embed(pixels.type(self.dtype)))
        return m.norm_pre(m.patch_drop(x))

    def run_block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[index](x)

    def pool(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        return self.model.forward_head(self.model.norm(self.drop_prompts(x, num_prompts)), pre_logits=True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels.type(self.dtype)), pre_logits=True)


def load_expert_checkpoint(model: nn.Module, path: str, expert: str) -> None:
    """Load a local checkpoint file into a timm ViT with timm's loader; errors name the file and the expert."""
    from timm.models import load_checkpoint
    from timm.models.vision_transformer import checkpoint_filter_fn

    if not osp.isfile(path):
        raise FileNotFoundError(f"expert {expert!r}: checkpoint file {path!r} does not exist (TRAINER.PMOE."
                                "CHECKPOINTS gives one file per timm expert, '' for none)")
    try:
        load_checkpoint(model, path, strict=True, filter_fn=checkpoint_filter_fn)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ExpertCheckpointError(
            f"expert {expert!r}: checkpoint {path!r} does not match timm model {expert!r}: {exc}".strip()) from exc


def create_timm_expert(name: str, checkpoint: str = "", kwargs: Optional[dict] = None, pretrained: bool = False,
                       allow_random: bool = False) -> TimmViTExpert:
    """``timm.create_model(name, num_classes=0, **kwargs)``, then the local ``checkpoint`` if given.

    ``pretrained`` lets timm fetch its published weights (never in tests). Without a checkpoint and without
    ``pretrained``, the weights are random: allowed only with ``allow_random`` (tests, benchmarks), otherwise an
    error, because a random expert silently wastes a run.
    """
    import timm

    if not checkpoint and not pretrained and not allow_random:
        raise ValueError(f"expert {name!r} has no weights: give a local file in TRAINER.PMOE.CHECKPOINTS, or set "
                         "TRAINER.PMOE.TIMM_PRETRAINED True (timm downloads them), or TRAINER.PMOE."
                         "TIMM_RANDOM_INIT True for random weights (tests and benchmarks only)")
    try:
        model = timm.create_model(name, pretrained=pretrained and not checkpoint, num_classes=0, **(kwargs or {}))
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ValueError(f"expert {name!r} is not a timm model name (see timm.list_models('vit_*'))") from exc
        raise
    if checkpoint:
        load_expert_checkpoint(model, checkpoint, name)
    return TimmViTExpert(model, name)


def parse_timm_kwargs(entries: Sequence[str], experts: Sequence[str]) -> Dict[str, dict]:
    """``TRAINER.PMOE.TIMM_KWARGS``: entries "NAME key=value key=value" (values as Python literals) giving timm
    expert NAME extra ``create_model`` keyword arguments, e.g. "vit_tiny_patch16_224 img_size=32 depth=2"."""
    kwargs: Dict[str, dict] = {}
    for entry in entries:
        name, *pairs = str(entry).split()
        if name not in experts:
            raise ValueError(f"TRAINER.PMOE.TIMM_KWARGS entry {entry!r} names {name!r}, which is not in "
                             f"TRAINER.PMOE.EXPERTS {list(experts)}")
        if name in kwargs:
            raise ValueError(f"TRAINER.PMOE.TIMM_KWARGS has two entries for {name!r}")
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"TRAINER.PMOE.TIMM_KWARGS entry {entry!r}: {pair!r} is not key=value")
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                options[key] = value  # a bare word, e.g. global_pool=avg
        kwargs[name] = options
    return kwargs


def build_experts(clip_model: Optional[nn.Module], names: Sequence[str], checkpoints: Sequence[str] = (),
                  timm_kwargs: Optional[Dict[str, dict]] = None, pretrained: bool = False,
                  allow_random: bool = False) -> List[FrozenViTExpert]:
    """One expert per name ("clip" = CLIP's visual tower, anything else a timm model name), all frozen, in eval."""
    names = list(names)
    if not names:
        raise ValueError("TRAINER.PMOE.EXPERTS is empty: name at least one expert (clip or a timm ViT name)")
    if len(set(names)) != len(names):
        raise ValueError(f"TRAINER.PMOE.EXPERTS has duplicates: {names}")
    checkpoints = list(checkpoints) or [""] * len(names)
    if len(checkpoints) != len(names):
        raise ValueError(f"TRAINER.PMOE.CHECKPOINTS has {len(checkpoints)} entries for {len(names)} experts "
                         f"{names}; give one per expert ('' for none)")
    experts: List[FrozenViTExpert] = []
    for name, checkpoint in zip(names, checkpoints):
        if name == CLIP_EXPERT:
            if checkpoint:
                raise ValueError(f"expert 'clip' takes its weights from MODEL.BACKBONE.NAME, not from "
                                 f"TRAINER.PMOE.CHECKPOINTS ({checkpoint!r}); leave its entry ''")
            if clip_model is None:
                raise ValueError("expert 'clip' needs a CLIP model (MODEL.BACKBONE.NAME)")
            expert: FrozenViTExpert = ClipVisualExpert(clip_model.visual)
        else:
            expert = create_timm_expert(name, checkpoint, (timm_kwargs or {}).get(name), pretrained, allow_random)
        expert.eval().requires_grad_(False)
        experts.append(expert)
    return experts
