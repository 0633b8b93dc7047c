"""``load_clip``: CoOp's ``load_clip_to_cpu`` for a backbone name or a local file, with errors that say what is wrong.

The result is exactly what OpenAI's ``build_model`` returns (fp16 weights, eval mode); trainers call ``.float()``
for fp32/amp. Each loader opens the file itself (by path), so a failed TorchScript attempt never leaves a consumed
file handle for the state-dict attempt (the pip package's EOFError).
"""
from __future__ import annotations

import difflib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from ._import import import_clip
from .download import available_backbones, backbone_urls, default_cache_dir, download_checkpoint
from .open_clip_backbone import is_open_clip_backbone, load_open_clip

TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias",
             "text_projection", "logit_scale", "transformer.resblocks.0.attn.in_proj_weight")
VIT_KEYS = ("visual.proj", "visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
            "visual.ln_pre.weight", "visual.ln_post.weight", "visual.transformer.resblocks.0.attn.in_proj_weight")
RESNET_KEYS = ("visual.conv1.weight", "visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding",
               "visual.attnpool.q_proj.weight", "visual.attnpool.c_proj.weight")
WRAPPER_KEYS = ("state_dict", "model")
_PATH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl", ".zip")


class CheckpointFormatError(RuntimeError):
    """A checkpoint file that cannot be read, or does not hold a CLIP state dict."""


def _looks_like_path(text: str, close_names: List[str]) -> bool:
    """Heuristic for the error type: "ViT-B/17" is a mistyped name, "ckpt/clip.pt" a missing file."""
    if text.lower().endswith(_PATH_SUFFIXES) or text.startswith(("/", ".", "~")):
        return True
    return os.sep in text and not close_names


def resolve_checkpoint(backbone: str, download_root: Optional[Union[str, Path]] = None) -> Path:
    """Local file for ``backbone``: a known name is downloaded (verified, cached), anything else must be a file."""
    backbone = str(backbone)
    urls = backbone_urls()
    if backbone in urls:
        return download_checkpoint(urls[backbone], download_root or default_cache_dir())
    path = Path(backbone).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointFormatError(f"CLIP checkpoint path {path} is not a file")
    valid = ", ".join(available_backbones())
    close = difflib.get_close_matches(backbone, list(urls), n=1)
    if _looks_like_path(backbone, close):
        raise FileNotFoundError(f"CLIP checkpoint file not found: {path} (valid backbone names: {valid})")
    hint = f' Did you mean "{close[0]}"?' if close else ""
    raise ValueError(f'unknown CLIP backbone "{backbone}" (and no file at that path).{hint} '
                     f"Valid names: {valid}; or give the path of a checkpoint file")


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` (torch.save zips have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())


def _load_torchscript(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location="cpu")


def _load_pickle(path: Path) -> Any:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _read_checkpoint(path: Path) -> Any:
    """The object stored in ``path``, trying TorchScript and torch.load (most likely first), each on its own open."""
    loaders: List[Tuple[str, Callable[[Path], Any]]] = [
        ("torch.jit.load (OpenAI JIT archive)", _load_torchscript),
        ("torch.load(weights_only=True) (state dict)", _load_pickle),
    ]
    if not _is_torchscript(path):
        loaders.reverse()
    failures = []
    for label, loader in loaders:
        try:
            return loader(path)
        except Exception as exc:  # each failure is reported below
            first_line = (str(exc).strip().splitlines() or [""])[0]
            failures.append(f"{label}: {type(exc).__name__}: {first_line}")
    raise CheckpointFormatError(f"cannot read CLIP checkpoint {path}: it is neither an OpenAI JIT archive nor a "
                                "torch.save'd state dict. Tried " + "; ".join(failures))


def _as_state_dict(obj: Any, path: Path) -> Dict[str, Any]:
    """The CLIP state dict inside a loaded object: a module, a state dict, or a dict holding one under a wrapper key."""
    if isinstance(obj, (nn.Module, torch.jit.ScriptModule)):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"{path} holds a {type(obj).__name__}, not a CLIP state dict")
    for key in WRAPPER_KEYS:
        if "token_embedding.weight" not in obj and isinstance(obj.get(key), (Mapping, nn.Module)):
            return _as_state_dict(obj[key], path)
    state = dict(obj)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from DataParallel
    return state


def check_clip_state_dict(state_dict: Mapping[str, Any], source: str = "state dict") -> None:
    """Raise ``CheckpointFormatError`` naming the missing keys unless ``state_dict`` has CLIP's text and image keys."""
    if "visual.proj" in state_dict:
        visual: Tuple[str, ...] = VIT_KEYS
    elif any(str(k).startswith("visual.layer1.") for k in state_dict):
        visual = RESNET_KEYS
    else:
        visual = ("visual.proj (ViT) or visual.layer1.* (ResNet)",)
    missing = [key for key in TEXT_KEYS + visual if key not in state_dict]
    if missing:
        sample = ", ".join(list(map(str, state_dict))[:8]) or "none"
        raise CheckpointFormatError(f"{source} is not a CLIP checkpoint: missing keys {', '.join(missing)} "
                                    f"(its first keys: {sample})")


def check_block_stacks(state_dict: Mapping[str, Any], source: str = "state dict") -> None:
    """Every stack of numbered blocks (``transformer.resblocks.N``, ``visual.layerK.N``) must be numbered 0..n-1 and
    each block must have the same keys as its stack's block 0: OpenAI's ``build_model`` counts blocks, so a missing
    one would otherwise load as a smaller model."""
    stacks: Dict[str, Dict[int, set]] = {}
    for key in map(str, state_dict):
        parts = key.split(".")
        for i in range(1, len(parts) - 1):
            if parts[i].isdigit() and (parts[i - 1] == "resblocks" or parts[i - 1].startswith("layer")):
                stack = ".".join(parts[:i])
                stacks.setdefault(stack, {}).setdefault(int(parts[i]), set()).add(".".join(parts[i + 1:]))
                break
    for stack, blocks in stacks.items():
        numbers = sorted(blocks)
        gaps = [n for n in range(numbers[-1] + 1) if n not in blocks]
        if gaps:
            raise CheckpointFormatError(f"{source} is an incomplete CLIP checkpoint: block {stack}.{gaps[0]} is "
                                        f"missing (it has {stack}.{{{','.join(map(str, numbers))}}}); the file is "
                                        "damaged or was edited: use the original checkpoint")
        if stack.endswith("resblocks"):  # ResNet stages start with a downsampling block whose keys differ
            for n in numbers[1:]:
                lacking = sorted(blocks[0] - blocks[n])
                if lacking:
                    raise CheckpointFormatError(f"{source} is an incomplete CLIP checkpoint: {stack}.{n} lacks "
                                                f"{', '.join(lacking[:4])}; use the original checkpoint")


def build_clip(state_dict: Mapping[str, Any], source: str = "state dict") -> nn.Module:
    """OpenAI's ``build_model`` on a checked copy of ``state_dict`` (it deletes keys from its argument)."""
    check_clip_state_dict(state_dict, source)
    check_block_stacks(state_dict, source)
    build_model = import_clip().model.build_model
    try:
        return build_model(dict(state_dict))
    except (RuntimeError, KeyError, ValueError, AssertionError, IndexError) as exc:
        raise CheckpointFormatError(f"{source}: OpenAI's build_model cannot rebuild CLIP from it: {exc}") from exc


def load_clip_file(path: Union[str, Path]) -> nn.Module:
    """CLIP (fp16 weights, eval) from a local OpenAI JIT archive, state dict, or dict with "state_dict"/"model"."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint file not found: {path}")
    state_dict = _as_state_dict(_read_checkpoint(path), path)
    return build_clip(state_dict, source=str(path))


def load_clip(backbone: str, device: Union[str, torch.device] = "cpu",
              download_root: Optional[Union[str, Path]] = None) -> nn.Module:
    """CLIP for a backbone name (RN50, ViT-B/16, ...; downloaded and cached), a checkpoint path, or an open_clip
    model (``open_clip:ARCH/PRETRAINED`` or ``open_clip:ARCH/PATH``, see ``open_clip_backbone``), in eval mode."""
    if is_open_clip_backbone(backbone):
        return load_open_clip(backbone).to(device).eval()
    model = load_clip_file(resolve_checkpoint(backbone, download_root))
    return model.to(device).eval()
