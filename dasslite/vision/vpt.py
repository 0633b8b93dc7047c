"""VPT-deep prompting of several frozen ViT experts at once, with a dispatcher per expert and prompt layer.

Token layout inside expert k: ``[prefix (CLS, registers), N_p prompt tokens, patches]``. At a prompt layer l the
prompt slot is filled with what expert k's dispatcher builds (from every expert's new EPTs at l, expert k's prompt
outputs of block l-1 and its pooled patch tokens); the first prompt layer inserts the slot, later ones replace it
(VPT-deep). Blocks that are not prompt layers carry the prompt tokens through like any other token. The experts
advance block by block in lockstep, so the dispatcher at layer l sees every expert's state at l.

Gradients: nothing before the first prompt layer depends on a prompt, so the patch embedding and those blocks run
under ``torch.no_grad()``; from there on, the frozen blocks are differentiated only as the path from the prompts
(and dispatchers) to the features, their weights never get gradients. N_p = 0 (or no prompt layer) runs each
expert exactly as its own forward does.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .dispatch import PromptDispatcher
from .experts import FrozenViTExpert


def check_prompt_layers(layers: Sequence[int], depths: Sequence[int], names: Sequence[str]) -> List[int]:
    """Sorted unique prompt layers; each must exist in every expert (the error names the expert and its depth)."""
    layers = sorted(set(int(x) for x in layers))
    for layer in layers:
        if layer < 0:
            raise ValueError(f"TRAINER.PMOE.PROMPT_LAYERS must be >= 0, got {layer}")
        for name, depth in zip(names, depths):
            if layer >= depth:
                raise ValueError(f"TRAINER.PMOE.PROMPT_LAYERS has layer {layer}, but expert {name!r} has only "
                                 f"{depth} blocks (0..{depth - 1})")
    return layers


class ExpertPromptTokens(nn.Module):
    """The EPTs: for expert k and prompt layer l, a parameter [N_p, D_k], initialised as VPT does (uniform with
    Xavier's bound over the patch-embedding fan-in and the width)."""

    def __init__(self, widths: Sequence[int], patch_sizes: Sequence[int], layers: Sequence[int],
                 num_prompts: int) -> None:
        super().__init__()
        self.layers, self.num_prompts = list(layers), num_prompts
        self.tokens = nn.ModuleList()
        for width, patch in zip(widths, patch_sizes):
            bound = math.sqrt(6.0 / float(3 * patch * patch + width))
            self.tokens.append(nn.ParameterList(
                nn.Parameter(torch.empty(num_prompts, width).uniform_(-bound, bound)) for _ in self.layers))

    def at(self, layer: int) -> List[torch.Tensor]:
        """Every expert's new EPTs at ``layer`` (a prompt layer)."""
        index = self.layers.index(layer)
        return [per_expert[index] for per_expert in self.tokens]


def build_dispatchers(kind: str, widths: Sequence[int], layers: Sequence[int], **options) -> nn.ModuleList:
    """``dispatchers[i][k]``: expert k's dispatcher at the i-th prompt layer (the first has no previous prompts)."""
    return nn.ModuleList(
        nn.ModuleList(PromptDispatcher(kind, widths, k, has_prev=i > 0, **options) for k in range(len(widths)))
        for i in range(len(layers)))


def prompted_features(experts: Sequence[FrozenViTExpert], inputs: Sequence[torch.Tensor],
                      prompts: Optional[ExpertPromptTokens], dispatchers: Optional[nn.ModuleList],
                      prompt_dropout: Optional[nn.Module] = None,
                      on_dispatch: Optional[Callable[[int, int, torch.Tensor], None]] = None) -> List[torch.Tensor]:
    """Each expert's pooled feature [B, D_k] with the dispatched deep prompts.

    ``inputs[k]`` is expert k's input (already in its preprocessing). ``on_dispatch(layer, k, weights [B, K+2])``
    is called for every dispatcher (routing records)."""
    n_p = prompts.num_prompts if prompts is not None else 0
    layers = prompts.layers if n_p else []
    first = layers[0] if layers else max(e.depth for e in experts)
    with torch.no_grad():
        states = [e.embed(x) for e, x in zip(experts, inputs)]
        for i in range(first):
            states = [e.run_block(i, x) if i < e.depth else x for e, x in zip(experts, states)]
    inserted = False
    for i in range(first, max(e.depth for e in experts)):
        if i in layers:
            slot = layers.index(i)
            new = prompts.at(i)
            if prompt_dropout is not None:
                new = [prompt_dropout(p) for p in new]
            updated = []
            for k, (expert, x) in enumerate(zip(experts, states)):
                pre = expert.num_prefix_tokens
                prev = x[:, pre:pre + n_p] if inserted else None
                patch = x[:, pre + (n_p if inserted else 0):].mean(dim=1)
                built, weights = dispatchers[slot][k](new, prev, patch)
                if on_dispatch is not None:
                    on_dispatch(i, k, weights)
                rest = x[:, pre + n_p:] if inserted else x[:, pre:]
                updated.append(torch.cat([x[:, :pre], built.to(x.dtype), rest], dim=1))
            states, inserted = updated, True
        states = [e.run_block(i, x) if i < e.depth else x for e, x in zip(experts, states)]
    return [e.pool(x, n_p if inserted else 0) for e, x in zip(experts, states)]


class DispatchRecorder:
    """Collects the source weights of every dispatcher during a forward: ``mean()`` [B, K+2] averages them over
    dispatchers (a distribution when each one is), ``per_dispatcher`` keeps {"layer<l>/<expert>": [B, K+2]}."""

    def __init__(self, expert_names: Sequence[str]) -> None:
        self.expert_names = list(expert_names)
        self.per_dispatcher: Dict[str, torch.Tensor] = {}

    def __call__(self, layer: int, expert: int, weights: torch.Tensor) -> None:
        self.per_dispatcher[f"layer{layer}/{self.expert_names[expert]}"] = weights.detach()

    def mean(self) -> Optional[torch.Tensor]:
        if not self.per_dispatcher:
            return None
        return torch.stack(list(self.per_dispatcher.values())).mean(0)
