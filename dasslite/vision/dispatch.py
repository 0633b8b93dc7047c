"""pMoE-style dispatchers: at a prompt layer, build one expert's prompts from a pool of candidate sources.

For expert k at prompt layer l the sources are (pMoE §3.3 as the public reviews describe it):
  - the new expert prompt tokens (EPTs) of **all** K experts at layer l, each mapped to expert k's width
    (``cross``: identity for k itself and for equal widths with ``cross_proj="identity"``, else a linear map);
  - expert k's prompt outputs of the previous block, ``prev`` [B, N_p, D] (absent at the first prompt layer);
  - the mean of expert k's patch tokens at the input of layer l, ``patch`` [B, D].
Source ids are fixed: 0..K-1 the experts' EPTs, K the previous prompts, K+1 the pooled patch token, so every
dispatcher reports weights over the same K+2 sources (an absent or disabled source has weight 0).

Types (``DISPATCHERS``):
  - ``gate``: one scalar weight per source and image, a softmax over the router logits of the pooled patch token
    (``TopKRouter`` with k = number of sources); prompts = the weighted sum of the sources.
  - ``topk``: the same with only the k largest logits kept (``TopKRouter``/``top_k_softmax`` of
    ``dasslite.prompting.routing``): exactly k non-zero weights that sum to 1.
  - ``attention``: token-level; each of expert k's N_p new EPTs is a query over all candidate tokens
    (K*N_p EPTs, N_p previous prompts, 1 pooled patch token); prompts = attention-weighted candidates. The source
    weights reported are the attention mass per source, averaged over the N_p queries.
  - ``none``: no dispatcher, the expert's own new EPTs (plain VPT-deep; the "dispatcher off" ablation and the
    single-expert baseline of ``benchmarks/bench_pmoe.py``); its source weight is 1.
Everything is computed in fp32 and returned in the tokens' dtype. The cost is O(B * N_p * (K+1) * N_p * d) per
dispatcher, negligible next to a ViT block.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslite.prompting.routing import TopKRouter

DISPATCHERS = ("gate", "attention", "topk", "none")
CROSS_PROJECTIONS = ("identity", "linear")


def source_names(expert_names: Sequence[str]) -> List[str]:
    """Names of the K+2 sources, in source-id order."""
    return [f"EPT[{name}]" for name in expert_names] + ["previous prompts", "patch tokens"]


class PromptDispatcher(nn.Module):
    """The dispatcher of one expert at one prompt layer (see the module docstring)."""

    def __init__(self, kind: str, widths: Sequence[int], target: int, has_prev: bool, use_prev: bool = True,
                 use_patch: bool = True, top_k: int = 1, attn_dim: int = 64, cross_proj: str = "identity") -> None:
        super().__init__()
        if kind not in DISPATCHERS:
            raise ValueError(f'TRAINER.PMOE.DISPATCHER "{kind}" is not one of {", ".join(DISPATCHERS)}')
        if cross_proj not in CROSS_PROJECTIONS:
            raise ValueError(f'TRAINER.PMOE.CROSS_PROJ "{cross_proj}" is not one of {", ".join(CROSS_PROJECTIONS)}')
        self.kind, self.target, self.num_experts = kind, target, len(widths)
        width = widths[target]
        self.width = width
        self.cross = nn.ModuleList(
            nn.Identity() if j == target or kind == "none" or (w == width and cross_proj == "identity")
            else nn.Linear(w, width)
            for j, w in enumerate(widths))
        self.use_prev, self.use_patch = bool(has_prev and use_prev), bool(use_patch)
        # the sources this dispatcher can use, as fixed source ids
        active = list(range(self.num_experts)) + ([self.num_experts] if self.use_prev else []) \
            + ([self.num_experts + 1] if self.use_patch else [])
        self.register_buffer("active", torch.tensor(active, dtype=torch.long), persistent=False)
        if kind == "none":
            pass
        elif kind == "attention":
            self.query = nn.Linear(width, attn_dim)
            self.key = nn.Linear(width, attn_dim)
            self.attn_dim = attn_dim
        else:
            k = len(active) if kind == "gate" else top_k
            if not 1 <= k <= len(active):
                raise ValueError(f"TRAINER.PMOE.TOPK {top_k} must be between 1 and the {len(active)} sources of "
                                 f"expert {target}'s dispatcher ({self.num_experts} experts' prompts"
                                 f"{' + previous prompts' if self.use_prev else ''}"
                                 f"{' + patch tokens' if self.use_patch else ''})")
            self.router = TopKRouter(width, len(active), k=k)

    def forward(self, new_prompts: Sequence[torch.Tensor], prev: Optional[torch.Tensor],
                patch: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``new_prompts``: every expert's new EPTs [N_p, D_j]; ``prev`` [B, N_p, D] or None; ``patch`` [B, D].
        Returns the prompts [B, N_p, D] for the target expert and the source weights [B, K+2] (fp32)."""
        dtype, batch = patch.dtype, patch.shape[0]
        if self.kind == "none":
            weights = patch.new_zeros(batch, self.num_experts + 2, dtype=torch.float32)
            weights[:, self.target] = 1.0
            return new_prompts[self.target].to(dtype).expand(batch, -1, -1), weights
        eps = torch.stack([proj(p.float()) for proj, p in zip(self.cross, new_prompts)])  # [K, N_p, D]
        n_p = eps.shape[1]
        patch = patch.float()
        if self.use_prev and prev is None:
            raise ValueError("this dispatcher was built to read the previous prompts, but none were given")
        prev = prev.float() if self.use_prev else None
        if self.kind == "attention":
            prompts, weights = self._attend(eps, prev, patch)
        else:
            routing = self.router(F.layer_norm(patch, patch.shape[-1:]))
            dense = routing.dense_weights().float()  # [B, S_active] (fp32 also under autocast)
            prompts = torch.einsum("bk,knd->bnd", dense[:, :self.num_experts], eps)
            col = self.num_experts
            if self.use_prev:
                prompts = prompts + dense[:, col, None, None] * prev
                col += 1
            if self.use_patch:
                prompts = prompts + dense[:, col, None, None] * patch[:, None, :]
            weights = patch.new_zeros(batch, self.num_experts + 2).index_copy(1, self.active, dense)
        return prompts.to(dtype), weights

    def _attend(self, eps: torch.Tensor, prev: Optional[torch.Tensor], patch: torch.Tensor):
        batch, (n_experts, n_p, width) = patch.shape[0], eps.shape
        parts = [eps.reshape(1, n_experts * n_p, width).expand(batch, -1, -1)]
        sizes = [n_p] * n_experts
        if self.use_prev:
            parts.append(prev)
            sizes.append(n_p)
        if self.use_patch:
            parts.append(patch[:, None, :])
            sizes.append(1)
        candidates = torch.cat(parts, dim=1)  # [B, S_tok, D]
        q = self.query(F.layer_norm(eps[self.target], (width,)))  # [N_p, d]
        k = self.key(F.layer_norm(candidates, (width,)))  # [B, S_tok, d]
        attn = (q @ k.transpose(1, 2) / math.sqrt(self.attn_dim)).softmax(dim=-1)  # [B, N_p, S_tok]
        prompts = attn @ candidates
        per_source = torch.stack([chunk.sum(-1) for chunk in attn.split(sizes, dim=-1)], dim=-1).mean(1).float()
        weights = patch.new_zeros(batch, n_experts + 2).index_copy(1, self.active, per_source)
        return prompts, weights
