"""Per-expert input conversion: the data pipeline gives one CLIP-normalised tensor per image at INPUT.SIZE; each
expert wants its own size and mean/std.

``ExpertInput`` turns the pipeline tensor into the expert's input inside the model: resize to the expert's size,
then un-normalise with the pipeline's mean/std and re-normalise with the expert's. Both steps are linear and
per-channel weights of an interpolation sum to 1, so resizing before the affine map gives the same result as
after it; the affine map is folded into one ``x * scale + shift``. When size, mean and std already match (CLIP's
visual tower on the CLIP pipeline) the tensor passes through untouched (exactly the same values).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


class ExpertInput(nn.Module):
    """Pipeline tensor [B, 3, H, W] (normalised with ``source_mean/std``) -> expert input [B, 3, h, w]."""

    def __init__(self, source_mean: Sequence[float], source_std: Sequence[float], target_mean: Sequence[float],
                 target_std: Sequence[float], target_size: Tuple[int, int], interpolation: str = "bicubic") -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation "{interpolation}" is not one of {", ".join(INTERPOLATIONS)}')
        src_mean, src_std, dst_mean, dst_std = (torch.tensor(v, dtype=torch.float64)
                                                for v in (source_mean, source_std, target_mean, target_std))
        # raw = x * src_std + src_mean; out = (raw - dst_mean) / dst_std = x * scale + shift
        scale, shift = src_std / dst_std, (src_mean - dst_mean) / dst_std
        self.same_stats = bool((scale - 1).abs().max() < 1e-6 and shift.abs().max() < 1e-6)
        self.register_buffer("scale", scale.float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.float().view(1, 3, 1, 1), persistent=False)
        self.target_size = (int(target_size[0]), int(target_size[1]))
        self.interpolation = interpolation

    def extra_repr(self) -> str:
        return f"size={self.target_size}, interpolation={self.interpolation}, same_stats={self.same_stats}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.target_size:
            kwargs = {} if self.interpolation == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=self.target_size, mode=self.interpolation, **kwargs)
        if self.same_stats:
            return x
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
