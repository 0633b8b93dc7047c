"""Train/test image transforms with Dassl's choices, order and defaults (CLIP: bicubic + CLIP mean/std)."""
from __future__ import annotations

from typing import Optional, Sequence

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
SUPPORTED_CHOICES = ("random_flip", "random_resized_crop", "random_crop", "center_crop", "normalize",
                     "colorjitter", "randomgrayscale", "gaussian_blur")


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None):
    """The torchvision pipeline for ``cfg.INPUT``; ``None`` when ``INPUT.NO_TRANSFORM``."""
    if cfg.INPUT.NO_TRANSFORM:
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in SUPPORTED_CHOICES]
    if unknown:
        raise ValueError(f"INPUT.TRANSFORMS has unsupported choice(s) {unknown}; supported: {', '.join(SUPPORTED_CHOICES)}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(f'INPUT.INTERPOLATION "{cfg.INPUT.INTERPOLATION}" is not one of {", ".join(INTERPOLATION_MODES)}')
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    input_size = tuple(cfg.INPUT.SIZE)
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    return (_train_transform if is_train else _test_transform)(cfg, choices, input_size, interp, normalize)


def _train_transform(cfg, choices, input_size, interp, normalize):
    tfms = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        tfms.append(T.Resize(input_size, interpolation=interp))
    if "random_crop" in choices:
        tfms.append(T.RandomCrop(input_size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        tfms.append(T.RandomResizedCrop(input_size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        tfms.append(T.CenterCrop(input_size))
    if "random_flip" in choices:
        tfms.append(T.RandomHorizontalFlip())
    if "colorjitter" in choices:
        i = cfg.INPUT
        tfms.append(T.ColorJitter(brightness=i.COLORJITTER_B, contrast=i.COLORJITTER_C,
                                  saturation=i.COLORJITTER_S, hue=i.COLORJITTER_H))
    if "randomgrayscale" in choices:
        tfms.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfms.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    tfms.append(T.ToTensor())
    if "normalize" in choices:
        tfms.append(normalize)
    return T.Compose(tfms)


def _test_transform(cfg, choices, input_size, interp, normalize):
    tfms = [T.Resize(max(input_size), interpolation=interp), T.CenterCrop(input_size), T.ToTensor()]
    if "normalize" in choices:
        tfms.append(normalize)
    return T.Compose(tfms)
