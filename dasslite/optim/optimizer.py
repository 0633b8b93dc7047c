"""``build_optimizer`` with Dassl's names, defaults and staged-LR parameter groups."""
from __future__ import annotations

import warnings
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn

AVAILABLE_OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg, param_groups: Optional[Iterable] = None):
    """Build the optimizer named by ``optim_cfg.NAME`` over ``model``'s parameters (or explicit ``param_groups``)."""
    name = optim_cfg.NAME
    if name not in AVAILABLE_OPTIMIZERS:
        raise ValueError(f'OPTIM.NAME "{name}" is not supported; valid names: {", ".join(AVAILABLE_OPTIMIZERS)}')
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn("OPTIM.STAGED_LR is ignored because explicit param_groups were given")
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            if not isinstance(model, nn.Module):
                raise TypeError("OPTIM.STAGED_LR needs an nn.Module to split into new and base layers")
            if isinstance(model, nn.DataParallel):
                model = model.module
            new_layers = optim_cfg.NEW_LAYERS
            if not new_layers:
                raise ValueError("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty")
            new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
            base_params, new_params = [], []
            for child_name, child in model.named_children():
                (new_params if child_name in new_layers else base_params).extend(child.parameters())
            param_groups = [{"params": base_params, "lr": lr * optim_cfg.BASE_LR_MULT}, {"params": new_params}]
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)
