"""A sparse mixture of experts over the layers of an image encoder (FSMoE's low-level branch).

Expert e reads only the feature of its own layer ``layers[e]`` (the raw class token of that ViT block); a top-k
router (``routing.TopKRouter``) on the final, normalised image feature picks k experts per image and weights them
with a softmax over the k selected logits; the output is the gate-weighted sum of the selected experts' outputs:

    l(x) = sum_{e in topk(x)} g_e(x) * Expert_e(F_{layers[e]}(x))

The experts are E independent two-layer MLPs ``Linear(W, hidden) -> ReLU -> Linear(hidden, out)`` stored as
stacked weights, so the experts some image of the batch selected run as one batched matmul (an expert nobody
selected is not computed and gets a zero gradient). ``rank`` > 0 factorises each expert's two weight matrices into
rank-r products (``W = A @ B``): FSMoE's full experts are ~1.97 M parameters each at ViT-B (21.7 M for 11 layers);
rank 64 is ~0.28 M each.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from .routing import Routing, TopKRouter


def _uniform(shape, bound: float, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound).to(dtype))


class LayerExperts(nn.Module):
    """``num_experts`` independent MLPs ``in_dim -> hidden_dim -> out_dim`` (ReLU), initialised like ``nn.Linear``
    (uniform in +-1/sqrt(fan_in), weights and biases); ``rank`` > 0: each weight is a product of two rank-r factors
    (the first bounded by 1/sqrt(fan_in), the second by 1/sqrt(rank))."""

    def __init__(self, num_experts: int, in_dim: int, hidden_dim: int, out_dim: int, rank: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if num_experts < 1 or hidden_dim < 1 or rank < 0:
            raise ValueError(f"need num_experts >= 1, hidden_dim >= 1 and rank >= 0, got {num_experts}, "
                             f"{hidden_dim}, {rank}")
        self.num_experts, self.rank = num_experts, rank
        for name, fan_in, fan_out in (("fc1", in_dim, hidden_dim), ("fc2", hidden_dim, out_dim)):
            if rank:
                setattr(self, f"{name}_a", _uniform((num_experts, fan_in, rank), 1 / math.sqrt(fan_in), dtype))
                setattr(self, f"{name}_b", _uniform((num_experts, rank, fan_out), 1 / math.sqrt(rank), dtype))
            else:
                setattr(self, f"{name}_weight", _uniform((num_experts, fan_in, fan_out), 1 / math.sqrt(fan_in), dtype))
            setattr(self, f"{name}_bias", _uniform((num_experts, 1, fan_out), 1 / math.sqrt(fan_in), dtype))

    def _linear(self, name: str, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """x [n, B, in] through layer ``name`` of each of the n ``experts`` -> [n, B, out]."""
        if self.rank:
            x = torch.bmm(torch.bmm(x, getattr(self, f"{name}_a")[experts]), getattr(self, f"{name}_b")[experts])
        else:
            x = torch.bmm(x, getattr(self, f"{name}_weight")[experts])
        return x + getattr(self, f"{name}_bias")[experts]

    def forward(self, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Expert ``experts[j]`` on its own input ``x[j]``: x [n, B, in], experts [n] -> [n, B, out]."""
        x = x.type(self.fc1_bias.dtype)
        return self._linear("fc2", torch.relu(self._linear("fc1", x, experts)), experts)


class SparseLayerMoE(nn.Module):
    """Router on the final feature, top-k of the selected layers, one expert per layer, gate-weighted sum.

    ``layers``: the (0-indexed) encoder blocks whose features feed the experts, one expert each (in that order);
    ``in_dim`` their width, ``route_dim`` the final feature's, ``out_dim`` the output's. The router's parameters
    are fp32 (``TopKRouter``); the experts are in ``dtype`` (CLIP's, as the authors' fp16 runs have them).
    The layer list is a persistent buffer: a checkpoint records which layers its experts read."""

    def __init__(self, layers: Sequence[int], in_dim: int, route_dim: int, out_dim: int, k: int,
                 expert_hidden: int, router_hidden: int = 0, rank: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        layers = [int(i) for i in layers]
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"the expert layers must be a non-empty list without repeats, got {layers}")
        self.register_buffer("layers", torch.tensor(layers, dtype=torch.long))
        self.router = TopKRouter(route_dim, len(layers), k=k, hidden_dim=router_hidden)
        self.experts = LayerExperts(len(layers), in_dim, expert_hidden, out_dim, rank=rank, dtype=dtype)

    @property
    def num_experts(self) -> int:
        return self.experts.num_experts

    def forward(self, layer_features: torch.Tensor, final: torch.Tensor) -> Tuple[torch.Tensor, Routing]:
        """``layer_features`` [B, L, in] (every block), ``final`` [B, route] -> (output [B, out], routing)."""
        routing = self.router(final)
        used = routing.used_experts()  # experts selected by some image: the only ones computed
        inputs = layer_features.index_select(1, self.layers[used]).transpose(0, 1)  # [n, B, in]
        outputs = self.experts(inputs, used)  # [n, B, out]
        gates = routing.dense_weights()[:, used].t().unsqueeze(-1).to(outputs.dtype)  # [n, B, 1], 0 if unselected
        return (gates * outputs).sum(0), routing
