"""FSMoE's routing-consistency contrastive loss: images of one class should be routed alike.

The loss (RouterDC's sample-sample contrastive loss, with class labels as the tags, as FSMoE's release uses it):
for each anchor b of the batch, one positive p_b drawn uniformly from the images of b's class (b itself included
unless ``self_positive`` is off, as in the authors' code) and ``num_negatives`` H negatives drawn without
replacement from the images of other classes; with similarities S (cosine by default, or dot products)

    l_b = -log( exp(S[b, p_b] / T) / (exp(S[b, p_b] / T) + sum_{n in N_b} exp(S[b, n] / T)) )

averaged over the anchors that have a positive and at least H negatives (the others are skipped, as in the
authors' code; a batch without any valid anchor gives 0 with the graph kept). Sampling uses torch's global RNG, so
a seeded run is deterministic.

What the loss is applied to (``RC_TARGETS``) is a choice, because the paper and the release disagree: the release
applies it to the meta-net output ``h(x)`` (which does not feed the router), the paper calls it a *routing*
consistency loss. ``consistency_features`` gives each option from one forward's outputs.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .routing import Routing

RC_TARGETS = ("metanet", "router_logits", "router_probs", "router_hidden")
RC_SIMILARITIES = ("cos", "dot")


def consistency_features(target: str, meta_output: torch.Tensor, routing: Routing,
                         probs_temperature: float = 0.01) -> torch.Tensor:
    """The vectors [B, F] the loss compares, by ``target``:
    ``metanet`` the meta-net output h(x) (the authors' code); ``router_logits`` the router's raw logits r(x);
    ``router_probs`` ``softmax(r(x) / probs_temperature)`` (the dense, sharpened distribution the release computes
    but never uses); ``router_hidden`` the router MLP's hidden state (RouterDC's choice: the routing query)."""
    if target == "metanet":
        return meta_output
    if target == "router_logits":
        return routing.logits
    if target == "router_probs":
        return (routing.logits.float() / probs_temperature).softmax(dim=-1)
    if target == "router_hidden":
        if routing.hidden is None:
            raise ValueError("RC_TARGET router_hidden needs an mlp router (a hidden width > 0)")
        return routing.hidden
    raise ValueError(f'routing-consistency target "{target}" is not one of {", ".join(RC_TARGETS)}')


def routing_consistency_loss(features: torch.Tensor, labels: torch.Tensor, num_negatives: int = 10,
                             temperature: float = 0.01, similarity: str = "cos", self_positive: bool = True,
                             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The loss above on ``features`` [B, F] with class ``labels`` [B] (computed in fp32)."""
    if similarity not in RC_SIMILARITIES:
        raise ValueError(f'similarity "{similarity}" is not one of {", ".join(RC_SIMILARITIES)}')
    if num_negatives < 1 or temperature <= 0:
        raise ValueError(f"need num_negatives >= 1 and temperature > 0, got {num_negatives} and {temperature}")
    n = features.shape[0]
    x = features.float()
    if similarity == "cos":
        x = F.normalize(x, dim=-1)
    sim = x @ x.t()  # [B, B]
    same = labels[:, None] == labels[None, :]
    positive = same if self_positive else same & ~torch.eye(n, dtype=torch.bool, device=same.device)
    negative = ~same
    valid = positive.any(1) & (negative.sum(1) >= num_negatives)
    if not bool(valid.any()):
        return sim.sum() * 0.0
    keys = torch.rand(n, n, generator=generator, device=generator.device if generator else None).to(sim.device)
    pos = keys.masked_fill(~positive, -1.0).argmax(1, keepdim=True)  # one uniform draw among the positives
    neg = keys.masked_fill(~negative, -1.0).topk(num_negatives, dim=1).indices  # H uniform draws, no repeats
    logits = torch.cat([sim.gather(1, pos), sim.gather(1, neg)], dim=1) / temperature  # [B, 1 + H]
    return -logits.log_softmax(dim=1)[:, 0][valid].mean()
