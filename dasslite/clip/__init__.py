"""CLIP for dasslite: loading (names, OpenAI JIT archives, state dicts), verified downloads, tiny test CLIPs and the
shared text encoder every prompt-learning trainer uses. OpenAI's ``clip`` is imported lazily via ``import_clip``."""
from ._import import import_clip
from .download import (ChecksumError, available_backbones, backbone_urls, default_cache_dir, download_checkpoint,
                       register_backbone_url, sha256_from_url, unregister_backbone_url)
from .load import (CheckpointFormatError, build_clip, check_clip_state_dict, load_clip, load_clip_file,
                   resolve_checkpoint)
from .text import TextEncoder, bpe_encode, embed_tokens, eot_positions, tokenize
from .tiny import build_tiny_clip, save_jit_archive, save_state_dict

__all__ = [
    "import_clip", "load_clip", "load_clip_file", "resolve_checkpoint", "build_clip", "check_clip_state_dict",
    "CheckpointFormatError", "download_checkpoint", "ChecksumError", "available_backbones", "backbone_urls",
    "register_backbone_url", "unregister_backbone_url", "default_cache_dir", "sha256_from_url",
    "TextEncoder", "tokenize", "bpe_encode", "eot_positions", "embed_tokens",
    "build_tiny_clip", "save_state_dict", "save_jit_archive",
]
