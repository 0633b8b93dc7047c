"""Top-k routing over experts, and the auxiliary losses that shape a router.

One place for the mixture-of-experts router: MoCoOp routes an image feature over prompt experts; the sparse-MoE
methods (FSMoE, pMoE) route features over their own experts with the same top-k rule.

The routing rule (MoCoOp's, a sparse top-k gate): raw logits ``z = router(x)`` [B, E]; keep the k largest; their
weights are a softmax over *only those k logits* (no softmax before top-k, so the k weights sum to 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasslite.analysis.expert_usage import load_summary

ROUTER_TYPES = ("linear", "mlp")


@dataclass
class Routing:
    """What a router decided for a batch: raw ``logits`` [B, E], the selected experts ``indices`` [B, k] (largest
    logit first) and their ``weights`` [B, k] (softmax over the selected logits); an mlp router also gives its
    ``hidden`` state [B, H] (after the ReLU; FSMoE's routing-consistency loss can target it), else None."""

    logits: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor
    hidden: Optional[torch.Tensor] = None

    @property
    def num_experts(self) -> int:
        return self.logits.shape[-1]

    def dense_weights(self) -> torch.Tensor:
        """Weights as a dense [B, E] matrix (zero for unselected experts)."""
        return torch.zeros_like(self.logits).scatter(-1, self.indices, self.weights.to(self.logits.dtype))

    def used_experts(self) -> torch.Tensor:
        """The sorted ids of every expert selected by at least one sample."""
        return torch.unique(self.indices)


def top_k_softmax(logits: torch.Tensor, k: int):
    """``(indices, weights)``: the ``k`` largest logits per row and the softmax over only those (in fp32)."""
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"top-k needs 1 <= k <= number of experts ({logits.shape[-1]}), got k={k}")
    values, indices = logits.topk(k, dim=-1)
    return indices, values.float().softmax(dim=-1)


class TopKRouter(nn.Module):
    """``x`` [B, D] -> :class:`Routing` over ``num_experts``.

    - ``hidden_dim`` 0: one ``Linear(D, E)`` with bias (MoCoOp's router); > 0: ``Linear -> ReLU -> Linear``.
    - ``noisy``: noisy top-k gating (Shazeer et al., 2017): in training only, each logit gets Gaussian noise with a
      learned, input-dependent scale ``softplus(W_noise x)``, which spreads the load early in training.
    Parameters are fp32 whatever CLIP's precision; inputs are cast to fp32.
    """

    def __init__(self, in_dim: int, num_experts: int, k: int = 2, hidden_dim: int = 0, noisy: bool = False) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"a router needs at least one expert, got {num_experts}")
        if not 1 <= k <= num_experts:
            raise ValueError(f"TOP_K must be between 1 and the number of experts ({num_experts}), got {k}")
        if hidden_dim < 0:
            raise ValueError(f"router hidden_dim must be >= 0, got {hidden_dim}")
        self.k, self.num_experts = k, num_experts
        if hidden_dim:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                                     nn.Linear(hidden_dim, num_experts))
        else:
            self.net = nn.Linear(in_dim, num_experts)
        self.noise = nn.Linear(in_dim, num_experts) if noisy else None

    def forward(self, x: torch.Tensor) -> Routing:
        x = x.float()
        hidden = None
        if isinstance(self.net, nn.Sequential):
            hidden = self.net[1](self.net[0](x))
            logits = self.net[2](hidden)
        else:
            logits = self.net(x)
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(x))
        indices, weights = top_k_softmax(logits, self.k)
        return Routing(logits, indices, weights, hidden)


def router_load(routing: Routing) -> dict:
    """A batch's router load for the training log (``load_summary``): ``router_entropy`` (normalised entropy of the
    mean routing weight, 1 = even), ``router_busiest`` (the busiest expert's share of the routing weight) and
    ``router_picked`` (the fraction of images that had that expert among their top-k), as floats."""
    with torch.no_grad():
        mean_weight = routing.dense_weights().float().mean(0)
        picked = torch.zeros_like(routing.logits, dtype=torch.float32).scatter(-1, routing.indices, 1.0)
        summary = load_summary(mean_weight.tolist(), picked.mean(0).tolist())
    return {"router_entropy": summary["entropy"], "router_busiest": summary["busiest_share"],
            "router_picked": summary["busiest_picked"]}


def load_balancing_loss(routing: Routing) -> torch.Tensor:
    """Switch Transformer's balancing loss for top-k routing: ``E * sum_e f_e * p_e``, with ``f_e`` the fraction of
    the B*k assignments that went to expert e (no gradient) and ``p_e`` its mean router probability (softmax over
    all E logits). It is 1 when both are uniform and grows as the load concentrates."""
    num_experts = routing.num_experts
    counts = torch.zeros(num_experts, device=routing.logits.device).index_add_(
        0, routing.indices.reshape(-1), torch.ones(routing.indices.numel(), device=routing.logits.device))
    fraction = counts / routing.indices.numel()
    probs = routing.logits.float().softmax(dim=-1).mean(0)
    return num_experts * (fraction * probs).sum()


def boosted_top_k_target(scores: torch.Tensor, k: int, boost: float, temperature: float = 1.0) -> torch.Tensor:
    """MoCoOp's gating target [B, E]: ``softmax((scores + boost * 1[top-k of scores]) / temperature)``.

    The boost concentrates the target on the k best-matching experts (about 1/k each for boost 10 and cosine
    scores) while keeping their order. No gradient flows through the target."""
    scores = scores.detach().float()
    top = torch.zeros_like(scores).scatter(-1, scores.topk(k, dim=-1).indices, boost)
    return ((scores + top) / temperature).softmax(dim=-1)


def soft_target_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``KL(target || softmax(logits))`` (the paper's gating loss). Its gradient equals the
    authors' soft-target cross-entropy (they differ by the target's entropy, a constant)."""
    log_probs = logits.float().log_softmax(dim=-1)
    target = target.float()
    return (target * (target.clamp_min(1e-12).log() - log_probs)).sum(-1).mean()
