"""open_clip backbones: ``MODEL.BACKBONE.NAME`` = ``open_clip:ARCH/PRETRAINED`` (a tag open_clip downloads) or
``open_clip:ARCH/PATH`` (a local checkpoint; ``open_clip:ViT-B-16//abs/path.pt`` for an absolute path).

The model is presented under OpenAI CLIP's attribute names (``visual``, ``transformer``, ``token_embedding``,
``positional_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``, ``dtype``, ``visual.input_resolution``),
so every trainer and the shared text core (truncation, length buckets, shared prefixes) drive it unchanged. That is
exact only for text towers built like CLIP's: a causal transformer of plain residual blocks (no LayerScale), EOT
pooling (``text_pool_type == "argmax"``), a projection matrix and CLIP's BPE tokenizer (77 tokens, 49,408 ids).
Anything else (Hugging Face text towers in ``CustomTextCLIP``, CoCa, SigLIP's last-token pooling) is refused with
an error naming the architecture and the reason.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["OPEN_CLIP_PREFIX", "is_open_clip_backbone", "parse_open_clip_backbone", "load_open_clip",
           "wrap_open_clip", "OpenClipCLIP", "unsupported_text_tower"]

OPEN_CLIP_PREFIX = "open_clip:"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408


def is_open_clip_backbone(name: str) -> bool:
    return str(name).startswith(OPEN_CLIP_PREFIX)


def parse_open_clip_backbone(name: str) -> Tuple[str, Optional[str]]:
    """``open_clip:ARCH[/PRETRAINED-or-PATH]`` -> (ARCH, pretrained tag or local path or None)."""
    spec = str(name)[len(OPEN_CLIP_PREFIX):]
    arch, _, rest = spec.partition("/")
    if not arch:
        raise ValueError(f'backbone "{name}": expected open_clip:ARCH/PRETRAINED (e.g. '
                         "open_clip:ViT-B-16/laion2b_s34b_b88k) or open_clip:ARCH/PATH-to-a-checkpoint")
    if not rest:
        return arch, None
    looks_like_path = (rest.startswith(("/", ".", "~")) or "/" in rest or rest.lower().endswith(_CHECKPOINT_SUFFIXES))
    if looks_like_path:
        path = os.path.expanduser(rest)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'backbone "{name}": checkpoint file not found: {path}')
        return arch, path
    return arch, rest


def unsupported_text_tower(model: nn.Module) -> List[str]:
    """Why the shared text core cannot drive ``model``'s text tower exactly (empty when it can)."""
    import open_clip

    if not isinstance(model, open_clip.CLIP):
        return [f"its text tower is a {type(getattr(model, 'text', None)).__name__} inside a {type(model).__name__} "
                "(e.g. a Hugging Face text model), not CLIP's token embedding + causal transformer"]
    reasons = []
    if model.text_pool_type != "argmax":
        reasons.append(f'it pools the text by "{model.text_pool_type}", not at the EOT token ("argmax")')
    if not isinstance(model.text_projection, nn.Parameter):
        reasons.append(f"its text projection is a {type(model.text_projection).__name__}, not a matrix")
    if model.attn_mask is None:
        reasons.append("its text transformer is not causal (no attention mask)")
    if model.context_length != CLIP_CONTEXT_LENGTH or model.vocab_size != CLIP_VOCAB_SIZE:
        reasons.append(f"its tokenizer is not CLIP's (context {model.context_length}, vocabulary {model.vocab_size};"
                       f" CLIP's: {CLIP_CONTEXT_LENGTH}, {CLIP_VOCAB_SIZE})")
    for i, block in enumerate(model.transformer.resblocks):
        extras = [n for n in ("ls_1", "ls_2", "ln_attn") if not isinstance(getattr(block, n, nn.Identity()),
                                                                           nn.Identity)]
        if extras or not isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
            reasons.append(f"text block {i} is not a plain residual attention block ({', '.join(extras) or 'attn'})")
            break
    return reasons


class OpenClipCLIP(nn.Module):
    """An open_clip ``CLIP`` under OpenAI CLIP's attribute names; its modules are shared, not copied (so ``.float()``
    here also converts ``open_clip_model``)."""

    def __init__(self, model: nn.Module, arch: str, image_size: int) -> None:
        super().__init__()
        self.visual = model.visual
        self.transformer = model.transformer
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.logit_scale = model.logit_scale
        self.context_length, self.vocab_size, self.arch = model.context_length, model.vocab_size, arch
        if not hasattr(self.visual, "input_resolution"):
            self.visual.input_resolution = image_size
        if not hasattr(self.visual, "output_dim"):
            self.visual.output_dim = self.text_projection.shape[1]
        self._open_clip = [model]  # open_clip's own model (its encode_text/encode_image), not a submodule

    @property
    def open_clip_model(self) -> nn.Module:
        return self._open_clip[0]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the transformers compute in (fp16 as loaded, fp32 after ``.float()``), as OpenAI's ``dtype``."""
        return self.transformer.resblocks[0].attn.in_proj_weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.type(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        from .text import TextEncoder

        return TextEncoder(self).encode_tokens(text)

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        """OpenAI's CLIP.forward: scaled cosine logits per image and per text."""
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def _image_size(model: nn.Module, arch: str) -> int:
    size = getattr(model.visual, "image_size", None)
    if size is None:
        import open_clip

        size = (open_clip.get_model_config(arch) or {}).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def load_open_clip(name: str) -> OpenClipCLIP:
    """The open_clip model a backbone name describes, checked to fit the shared text core, in eval mode, with fp16
    weights like OpenAI's released CLIPs (trainers call ``.float()`` for fp32/amp/bf16, as for OpenAI's)."""
    try:
        import open_clip
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f'backbone "{name}" needs open_clip: pip install open_clip_torch') from exc
    arch, pretrained = parse_open_clip_backbone(name)
    if arch not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f'backbone "{name}": open_clip has no architecture "{arch}".{hint} '
                         "See open_clip.list_models()")
    if pretrained is None:
        raise ValueError(f'backbone "{name}" names no weights: use open_clip:{arch}/<pretrained tag> (see '
                         f"open_clip.list_pretrained()) or open_clip:{arch}/<path of a checkpoint file>")
    return wrap_open_clip(open_clip.create_model(arch, pretrained=pretrained, device="cpu"), arch, name)


def wrap_open_clip(model: nn.Module, arch: str, name: str = "") -> OpenClipCLIP:
    """An open_clip model (e.g. built with random weights by a benchmark) checked, in fp16, under OpenAI's names."""
    import open_clip

    reasons = unsupported_text_tower(model)
    if reasons:
        raise ValueError(f'backbone "{name or OPEN_CLIP_PREFIX + arch}": the open_clip architecture "{arch}" cannot '
                         f"be used with dasslite's prompt learners because {'; '.join(reasons)}. Choose a CLIP-style "
                         "architecture (e.g. ViT-B-16, ViT-L-14, RN50).")
    open_clip.model.convert_weights_to_lp(model, dtype=torch.float16)  # OpenAI's convention (LayerNorms stay fp32)
    return OpenClipCLIP(model, arch, _image_size(model, arch)).eval()
