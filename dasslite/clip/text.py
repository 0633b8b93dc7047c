"""CLIP's text side, shared by every prompt-learning trainer: tokenizer helpers and a fast, exact TextEncoder.

CoOp's TextEncoder runs all 77 positions through CLIP's blocks although the transformer is causal and only the EOT
token is read. Ours computes the same function with less work:
- positions after the batch's last EOT cannot influence any EOT token, so they are dropped (exact);
- attention is ``scaled_dot_product_attention(is_causal=True)`` on q/k/v from each block's own weights;
- in the last block only the EOT tokens are needed, so only their query, attention output and MLP are computed;
- rows are grouped into a few buckets of similar length (``length_buckets``), each cut after its own last EOT, so
  short class names do not pay for the longest one (exact for the same reason);
- ``chunk_size`` bounds memory when thousands of prompts are encoded (CoCoOp's per-image prompts, ensembles).
``reference=True`` runs CoOp's straightforward path through the CLIP modules, for equality tests and benchmarks;
setting ``text_encoder.reference_path = True`` makes every call take it (switches a whole built model, e.g. for
``benchmarks/bench_trainers.py``).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._import import import_clip


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False) -> torch.Tensor:
    """CLIP BPE tokens, [N, context_length] int64 (SOS ... EOT, zero padding); long texts raise unless truncate."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return import_clip().tokenize(texts, context_length=context_length, truncate=truncate).long()


def bpe_encode(text: str) -> list:
    """CLIP BPE token ids of ``text`` without SOS/EOT and without a length limit ([] for blank text): the pieces
    prompt learners splice together (CLIP's tokenizer cleans whitespace and lower-cases, as ``tokenize`` does)."""
    return list(import_clip().clip._tokenizer.encode(text))


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the EOT token per row: it has the largest id in CLIP's vocabulary (CLIP's own rule)."""
    return tokens.argmax(dim=-1)


def embed_tokens(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Token embeddings [N, L, D] in the model's dtype (what prompt learners splice their context into)."""
    embedding = clip_model.token_embedding
    return embedding(tokens.to(embedding.weight.device)).type(clip_model.dtype)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[N, L, D] -> [N, H, L, D/H]."""
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, H, L, D/H] -> [N, L, D]."""
    n, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * head_dim)


def _attend_and_mlp(block: nn.Module, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    **mask) -> torch.Tensor:
    """The rest of a CLIP block after its q/k/v: multi-head attention (``mask``: ``is_causal`` or ``attn_mask``),
    output projection, residual, then the MLP with its residual. ``x`` [N, Lq, D] are the queries' inputs."""
    heads = block.attn.num_heads
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads),
                                         **mask)
    x = x + block.attn.out_proj(_merge_heads(out))
    return x + block.mlp(block.ln_2(x))


def _keys_values(block: nn.Module, x: torch.Tensor):
    """The block's keys and values of ``x`` [..., L, D] (its ln_1, then the k/v rows of in_proj)."""
    width, bias = x.shape[-1], block.attn.in_proj_bias
    weight = block.attn.in_proj_weight[width:]
    return F.linear(block.ln_1(x), weight, None if bias is None else bias[width:]).chunk(2, dim=-1)


def _per_row(x: torch.Tensor, n: int) -> torch.Tensor:
    """[G, P, D] -> [G * n, P, D]: each group's tensor repeated for its n rows."""
    return x.unsqueeze(1).expand(-1, n, -1, -1).reshape(x.shape[0] * n, *x.shape[1:])


def causal_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One CLIP ResidualAttentionBlock on batch-first x [N, L, D] with a causal mask (= CLIP's text mask)."""
    attn = block.attn
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _attend_and_mlp(block, x, q, k, v, is_causal=True)


def prefixed_block(block: nn.Module, prefix: torch.Tensor, suffix: torch.Tensor):
    """One CLIP block on G x N sequences: group g's N sequences all begin with ``prefix[g]`` ([G, P, D]) and go on
    with ``suffix[g]`` ([G, N, S, D]). The mask is causal, so a prefix's states do not depend on what follows: they
    are computed once per group, and each suffix attends to its prefix's keys/values and to its own earlier
    positions. Returns both new states."""
    attn = block.attn
    groups, p_len, width = prefix.shape
    n, s_len = suffix.shape[1], suffix.shape[2]
    q_p, k_p, v_p = F.linear(block.ln_1(prefix), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
    rows = suffix.reshape(groups * n, s_len, width)
    q_s, k_s, v_s = F.linear(block.ln_1(rows), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
    k = torch.cat([_per_row(k_p, n), k_s], dim=1)
    v = torch.cat([_per_row(v_p, n), v_s], dim=1)
    visible = torch.ones(s_len, p_len + s_len, dtype=torch.bool, device=suffix.device).tril(diagonal=p_len)
    rows = _attend_and_mlp(block, rows, q_s, k, v, attn_mask=visible)
    prefix = _attend_and_mlp(block, prefix, q_p, k_p, v_p, is_causal=True)  # the prefix's own causal block
    return prefix, rows.view(groups, n, s_len, width)


def prefixed_block_at(block: nn.Module, prefix: torch.Tensor, suffix: torch.Tensor,
                      positions: torch.Tensor) -> torch.Tensor:
    """``prefixed_block``'s output [G * N, D] at one suffix position per row (the EOT; ``positions`` [G * N]),
    skipping every other position."""
    attn = block.attn
    groups, n, s_len, width = suffix.shape
    p_len = prefix.shape[1]
    rows = suffix.reshape(groups * n, s_len, width)
    index = torch.arange(rows.shape[0], device=suffix.device)
    bias = attn.in_proj_bias
    picked = rows[index, positions].unsqueeze(1)  # [G*N, 1, D]
    q = F.linear(block.ln_1(picked), attn.in_proj_weight[:width], None if bias is None else bias[:width])
    k_p, v_p = _keys_values(block, prefix)
    k_s, v_s = _keys_values(block, rows)
    k = torch.cat([_per_row(k_p, n), k_s], dim=1)
    v = torch.cat([_per_row(v_p, n), v_s], dim=1)
    visible = torch.arange(k.shape[1], device=suffix.device)[None, :] <= (positions + p_len)[:, None]
    return _attend_and_mlp(block, picked, q, k, v, attn_mask=visible[:, None, None, :])[:, 0]


def causal_block_at(block: nn.Module, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The block's output [N, D] at one position per row (keys: that position and earlier), skipping the rest:
    ``prefixed_block_at`` with nothing shared."""
    return prefixed_block_at(block, x.new_zeros(1, 0, x.shape[-1]), x.unsqueeze(0), positions)


def plan_length_buckets(lengths: Sequence[int], max_buckets: int, overhead: float = 0.0,
                        fixed: float = 0.0) -> List[List[int]]:
    """Split rows of the given lengths into at most ``max_buckets`` buckets of similar length, minimising the padded
    tokens: sum over buckets of (rows x the bucket's longest length + ``overhead``). ``fixed`` is added to the
    overhead of every bucket (e.g. a shared prefix run again per bucket). Returns each bucket's row indices, shortest
    bucket first, rows in their original order within a bucket; one bucket (every row) when splitting does not pay.
    Exact dynamic programming over the distinct lengths (at most 77 for CLIP), so it is cheap."""
    lengths = [int(n) for n in lengths]
    if max_buckets < 1:
        raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
    values = sorted(set(lengths))
    if max_buckets == 1 or len(values) < 2:
        return [list(range(len(lengths)))]
    counts = [0] * len(values)
    where = {v: i for i, v in enumerate(values)}
    for n in lengths:
        counts[where[n]] += 1
    below = [0]
    for c in counts:
        below.append(below[-1] + c)
    per_bucket = overhead + fixed
    m, inf = len(values), float("inf")
    # best[k][j]: least cost of the j shortest distinct lengths in k buckets; cut[k][j]: where the last bucket starts
    best = [[inf] * (m + 1) for _ in range(max_buckets + 1)]
    cut = [[0] * (m + 1) for _ in range(max_buckets + 1)]
    best[0][0] = 0.0
    for k in range(1, max_buckets + 1):
        for j in range(1, m + 1):
            for i in range(k - 1, j):
                cost = best[k - 1][i] + (below[j] - below[i]) * values[j - 1] + per_bucket
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_buckets + 1), key=lambda kk: (best[kk][m], kk))
    bounds, j = [], m
    while k:
        i = cut[k][j]
        bounds.append((values[i], values[j - 1]))
        j, k = i, k - 1
    bounds.reverse()
    return [[r for r, n in enumerate(lengths) if lo <= n <= hi] for lo, hi in bounds]


DEFAULT_LENGTH_BUCKETS = 4
# What one more bucket costs, in token positions of a ViT-B text transformer (width 512): a CUDA bucket adds ~10
# kernel launches per block, worth about a thousand tokens on an H100; on a CPU it is a few Python calls per block.
# Both the fixed cost and a token's cost are per block, and a token's grows with width^2, so for another width the
# cost in tokens is scaled by (512 / width)^2 (a tiny test model hardly ever splits; ViT-L's text splits sooner).
BUCKET_OVERHEAD_TOKENS = {"cuda": 1024.0, "cpu": 8.0}
BUCKET_OVERHEAD_WIDTH = 512


class TextEncoder(nn.Module):
    """CLIP's frozen text transformer as CoOp's TextEncoder: prompt embeddings [N, L, D] + tokens -> features [N, E].

    It holds (does not copy) the CLIP model's token_embedding, positional_embedding, transformer, ln_final and
    text_projection, and freezes them unless ``freeze=False``. Gradients flow to the prompt embeddings passed in.
    """

    def __init__(self, clip_model: nn.Module, chunk_size: Optional[int] = None, truncate: bool = True,
                 freeze: bool = True) -> None:
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.chunk_size = chunk_size
        self.truncate = truncate
        self.reference_path = False  # True: every forward takes the reference path (benchmarks, equality checks)
        self.length_buckets = DEFAULT_LENGTH_BUCKETS  # at most this many length buckets per call; 1 = one padded batch
        for i, block in enumerate(self.transformer.resblocks):
            attn = getattr(block, "attn", None)
            if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
                raise TypeError(f"text block {i} is not a CLIP ResidualAttentionBlock with a packed in_proj_weight")
        if freeze:
            self.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the transformer computes in (fp16 for OpenAI's weights, fp32 after ``clip_model.float()``)."""
        return self.transformer.resblocks[0].attn.in_proj_weight.dtype

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor, *,
                reference: bool = False) -> torch.Tensor:
        """Text features [N, E] of prompt embeddings [N, L, D]; ``tokenized_prompts`` [N, L] locate each EOT."""
        if prompts.dim() != 3 or tuple(prompts.shape[:2]) != tuple(tokenized_prompts.shape):
            raise ValueError(f"prompts {tuple(prompts.shape)} and tokenized_prompts {tuple(tokenized_prompts.shape)} "
                             "must be [N, L, D] and [N, L]")
        eot = eot_positions(tokenized_prompts).to(prompts.device)
        if reference or self.reference_path:
            return self._encode_reference(prompts, eot)
        return self._by_length(eot + 1, 0, lambda rows: self._encode_chunked(
            prompts if rows is None else prompts.index_select(0, rows), eot if rows is None else eot[rows]))

    def _by_length(self, lengths: torch.Tensor, dim: int, encode: Callable[[Optional[torch.Tensor]], torch.Tensor],
                   groups: int = 1, fixed: int = 0) -> torch.Tensor:
        """``encode(None)`` on all rows, or ``encode(rows)`` per length bucket (``plan_length_buckets``), results put
        back in row order along ``dim``. ``lengths`` [N] are the positions each row needs; a row stands for
        ``groups`` sequences, and each bucket also runs ``fixed`` positions again (a shared prefix)."""
        if not self.truncate or self.length_buckets <= 1 or lengths.numel() < 2:
            return encode(None)
        per_bucket = BUCKET_OVERHEAD_TOKENS.get(lengths.device.type, BUCKET_OVERHEAD_TOKENS["cuda"])
        width = self.positional_embedding.shape[-1]
        overhead = per_bucket * (BUCKET_OVERHEAD_WIDTH / width) ** 2 / groups
        buckets = plan_length_buckets(lengths.tolist(), self.length_buckets, overhead, fixed)
        if len(buckets) == 1:
            return encode(None)
        index = [torch.tensor(rows, device=lengths.device) for rows in buckets]
        order = torch.cat(index)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return torch.cat([encode(rows) for rows in index], dim).index_select(dim, inverse)

    def _encode_chunked(self, prompts: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        size = self.chunk_size
        if size is not None and prompts.shape[0] > size:
            return torch.cat([self._encode(prompts[i:i + size], eot[i:i + size])
                              for i in range(0, prompts.shape[0], size)])
        return self._encode(prompts, eot)

    def encode_tokens(self, tokens: torch.Tensor, *, reference: bool = False) -> torch.Tensor:
        """Features [N, E] of token ids [N, L]; equals ``clip_model.encode_text(tokens)``."""
        tokens = tokens.to(self.token_embedding.weight.device)
        return self(embed_tokens(self, tokens), tokens, reference=reference)

    def _encode(self, prompts: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype
        if prompts.shape[0] == 0:
            return prompts.new_zeros(0, self.text_projection.shape[1], dtype=dtype)
        length = int(eot.max()) + 1 if self.truncate else prompts.shape[1]
        x = prompts[:, :length].type(dtype) + self.positional_embedding[:length].type(dtype)
        *blocks, last = list(self.transformer.resblocks)
        for block in blocks:
            x = causal_block(block, x)
        x = causal_block_at(last, x, eot)
        return self.ln_final(x).type(dtype) @ self.text_projection

    def encode_prefixed(self, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Features of prompts that share their first P embeddings, encoding the shared part once.

        One prefix: ``prefix`` [P, D], ``suffix`` [N, L - P, D], ``eot`` [N] -> [N, E].
        G prefixes (e.g. one per image, CoCoOp): ``prefix`` [G, P, D], ``suffix`` [G, N, L - P, D], ``eot`` [N] or
        [G, N] -> [G, N, E]. ``eot`` are EOT positions in the whole prompt (all >= P). The result equals ``forward``
        on the concatenated prompts (SOS + a context before the class name is the typical prefix).
        ``chunk_size`` bounds the prompts per call (whole groups when there are several)."""
        single = prefix.dim() == 2
        if single:
            prefix, suffix = prefix.unsqueeze(0), suffix.unsqueeze(0)
        eot = eot.to(suffix.device)
        if (prefix.dim() != 3 or suffix.dim() != 4 or prefix.shape[0] != suffix.shape[0]
                or prefix.shape[-1] != suffix.shape[-1] or eot.shape[-1] != suffix.shape[1] or eot.dim() > 2):
            raise ValueError(f"prefix {tuple(prefix.shape)}, suffix {tuple(suffix.shape)} and eot {tuple(eot.shape)} "
                             "must be [P, D], [N, S, D], [N] or [G, P, D], [G, N, S, D], [N] / [G, N]")
        groups, n, p_len = suffix.shape[0], suffix.shape[1], prefix.shape[1]
        eot = eot.expand(groups, n)
        if eot.numel() and int(eot.min()) < p_len:
            raise ValueError(f"an EOT position ({int(eot.min())}) lies inside the shared prefix of length {p_len}")
        if self.reference_path:
            full = torch.cat([prefix.unsqueeze(1).expand(-1, n, -1, -1), suffix], dim=2).flatten(0, 1)
            full = F.pad(full, (0, 0, 0, self.positional_embedding.shape[0] - full.shape[1]))
            out = self._encode_reference(full, eot.reshape(-1)).view(groups, n, -1)
        else:
            out = self._by_length(eot.amax(0) + 1 - p_len, 1, lambda rows: self._encode_prefixed_chunked(
                prefix, suffix if rows is None else suffix.index_select(1, rows),
                eot if rows is None else eot[:, rows]), groups=groups, fixed=p_len)
        return out[0] if single else out

    def _encode_prefixed_chunked(self, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """``_encode_prefixed`` in calls of at most ``chunk_size`` prompts (whole groups when they fit)."""
        groups, n = suffix.shape[:2]
        if not self.chunk_size or groups * n <= self.chunk_size:
            out = self._encode_prefixed(prefix, suffix, eot)
        elif n <= self.chunk_size:  # whole groups per call
            per_call = self.chunk_size // n
            out = torch.cat([self._encode_prefixed(prefix[g:g + per_call], suffix[g:g + per_call],
                                                   eot[g:g + per_call]) for g in range(0, groups, per_call)])
        else:  # a group's rows in several calls
            size = self.chunk_size
            out = torch.cat([torch.cat([self._encode_prefixed(prefix[g:g + 1], suffix[g:g + 1, i:i + size],
                                                              eot[g:g + 1, i:i + size]) for i in range(0, n, size)],
                                       dim=1) for g in range(groups)])
        return out

    def _encode_prefixed(self, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """[G, P, D] + [G, N, S, D] + EOT [G, N] -> features [G, N, E]."""
        dtype = self.dtype
        groups, n = suffix.shape[:2]
        if n == 0:
            return suffix.new_zeros(groups, 0, self.text_projection.shape[1], dtype=dtype)
        p_len = prefix.shape[1]
        length = int(eot.max()) + 1
        pos = self.positional_embedding.type(dtype)
        x_p = prefix.type(dtype) + pos[:p_len]
        x_s = suffix[:, :, :length - p_len].type(dtype) + pos[p_len:length]
        *blocks, last = list(self.transformer.resblocks)
        for block in blocks:
            x_p, x_s = prefixed_block(block, x_p, x_s)
        y = prefixed_block_at(last, x_p, x_s, (eot - p_len).reshape(-1))
        return (self.ln_final(y).type(dtype) @ self.text_projection).view(groups, n, -1)

    def _encode_reference(self, prompts: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """CoOp's TextEncoder verbatim in behaviour: all positions, CLIP's own blocks and 77x77 mask."""
        dtype = self.dtype
        x = prompts.type(dtype) + self.positional_embedding.type(dtype)
        if getattr(self.transformer, "batch_first", False):  # open_clip: batch-first blocks, causal mask passed in
            length = x.shape[1]
            mask = torch.full((length, length), float("-inf"), dtype=dtype, device=x.device).triu(1)
            x = self.transformer(x, attn_mask=mask)
        else:
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
