"""Text-to-text losses between learned class features and hard-template class features (LASP, MoCoOp).

Both methods score a set of "query" text features against a set of "key" text features of the same classes and
ask each query to pick the key of its own class: a cross-entropy over classes with the diagonal as target. They
differ only in which side is the query, the scale and the noise, so the two are one function plus a wrapper.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .model import l2_normalize


def text_loss_scale(temperature: float, logit_scale: torch.Tensor):
    """The logit scale of a text-to-text loss: ``1 / temperature``, or for temperature 0 CLIP's own scale
    (``logit_scale.exp()``, no gradient). LASP's and MoCoOp's text losses both take it."""
    return 1.0 / temperature if temperature > 0 else logit_scale.detach().float().exp()


def text_to_text_loss(queries: torch.Tensor, keys: torch.Tensor, scale=1.0) -> torch.Tensor:
    """Mean over all queries of ``-log softmax_i(scale * <q_j, k_i>)[j]``: query j must pick key j of its class.

    ``queries`` [..., C, E] and ``keys`` [..., C, E] (leading dims broadcast, e.g. [T, C, E] against [C, E]) hold
    the same C classes in the same order. Features are used as given (normalise them first). Computed in fp32.
    - LASP: queries = hard-template features H [T, C, E], keys = learned features W [C, E], scale = CLIP's logit
      scale (each hand-crafted prompt is a sample classified by the learned-prompt classifier);
    - MoCoOp's grouped loss: queries = expert features [G, C, E], keys = group prototypes [G, C, E], scale 1.
    """
    if queries.shape[-2:] != keys.shape[-2:]:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must agree in the last two "
                         "dims [C, E]")
    logits = torch.as_tensor(scale, dtype=torch.float32, device=queries.device) * (
        queries.float() @ keys.float().transpose(-1, -2))  # [..., C_query, C_key]
    n_cls = logits.shape[-1]
    target = torch.arange(n_cls, device=logits.device).expand(logits.shape[:-1])
    return F.cross_entropy(logits.reshape(-1, n_cls), target.reshape(-1))


TEXT_LOSS_REDUCTIONS = ("all_experts", "encoded")


def grouped_text_loss(learned: torch.Tensor, prototypes: torch.Tensor, scale=1.0, num_experts: int = 0) -> torch.Tensor:
    """MoCoOp's semantically grouped text loss over the ``n`` encoded experts: ``learned`` [n, C, E] against their
    groups' prototypes [n, C, E].

    - ``num_experts`` 0 (reduction ``encoded``): the mean over the n encoded experts' C rows each.
    - ``num_experts`` G > 0 (reduction ``all_experts``, the authors' scaling): the mean over all G experts' rows, an
      expert that was not encoded counting as zero features, i.e. uniform logits and a CE of exactly ``log C`` with
      no gradient: ``(n * mean_encoded + (G - n) * log C) / G``. Each encoded expert gets 1/G of the weight whatever
      n is, as in their code (zero-filled unselected experts at batch size < 4, every expert encoded otherwise).
    """
    loss = text_to_text_loss(learned, prototypes, scale)
    if not num_experts:
        return loss
    n, n_cls = learned.shape[0], learned.shape[-2]
    if not 1 <= n <= num_experts:
        raise ValueError(f"{n} encoded experts out of {num_experts}: need 1 <= encoded <= all")
    return (n * loss + (num_experts - n) * math.log(n_cls)) / num_experts


def lasp_text_loss(learned: torch.Tensor, hard: torch.Tensor, scale, noise_prob: float = 0.5,
                   noise_std: float = 0.05) -> torch.Tensor:
    """LASP's text-to-text loss: every hard-template class feature ``hard`` [T, C, E] is classified by the learned
    class features ``learned`` [C, E] (normalised, after the correction vector), averaged over T x C.

    With probability ``noise_prob`` the hard features get N(0, noise_std^2) noise for this step (not re-normalised,
    as in the authors' code). The coin and the noise come from torch's global generators (seeded runs repeat).
    """
    if hard.dim() != 3 or learned.dim() != 2 or hard.shape[1:] != learned.shape:
        raise ValueError(f"hard features {tuple(hard.shape)} must be [T, C, E] for learned features "
                         f"{tuple(learned.shape)} [C, E]")
    if noise_prob > 0 and noise_std > 0 and torch.rand(()).item() < noise_prob:
        hard = hard + noise_std * torch.randn_like(hard)
    return text_to_text_loss(hard, learned, scale)


GATE_TARGETS = ("class", "agnostic")


def gate_target_scores(image_features: torch.Tensor, prototypes: torch.Tensor, label_rows=None) -> torch.Tensor:
    """Image-to-group similarities [B, G] that MoCoOp's gating target is built from (no gradient).

    ``prototypes`` [G, C, E] are the hard-template group prototypes (normalised). With ``label_rows`` [B] (each
    image's row in the prototypes' class list) the score of group g is the cosine with group g's prototype of the
    image's own class (class-specific, the authors' current code); without, with group g's prototype averaged over
    classes and re-normalised (class-agnostic, their first release)."""
    feats = image_features.detach().float()
    protos = prototypes.float()
    if label_rows is None:
        return feats @ l2_normalize(protos.mean(1)).t()
    per_image = protos[:, label_rows]  # [G, B, E]
    return torch.einsum("be,gbe->bg", feats, per_image)
