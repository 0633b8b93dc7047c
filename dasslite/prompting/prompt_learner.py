"""CoOp's learnable context, shared by every method that learns a static prompt (CoOp, KgCoOp, LASP, ...)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dasslite.clip import bpe_encode, embed_tokens, eot_positions, tokenize

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def count_tokens(text: str) -> int:
    """BPE tokens of ``text`` without SOS/EOS (counts what CLIP sees, not whitespace-separated words)."""
    return len(bpe_encode(text))


class ContextPromptLearner(nn.Module):
    """Prompts ``[SOS] ctx_1 .. ctx_M <class tokens> . [EOS]`` with a learnable context.

    - ``ctx_init`` (e.g. "a photo of a") initialises the context from those words' token embeddings; its length
      (in BPE tokens) sets ``n_ctx``. Otherwise ``n_ctx`` vectors are drawn from N(0, 0.02).
    - ``csc``: one context per class ([C, M, D]) instead of a shared one ([M, D]). Unlike CoOp, ``csc`` with
      ``ctx_init`` gives every class its own copy of the initial words (CoOp silently falls back to shared).
    - ``class_token_position``: where the class name goes: ``end`` (after the context), ``middle``, ``front``.
    ``token_prefix``/``token_suffix`` hold the frozen SOS and class-name embeddings; they depend on the current class
    names, so checkpoints are loaded without them (evaluation on new classes uses the new names).
    """

    class_dependent_keys = ("token_prefix", "token_suffix")

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int = 16, ctx_init: str = "",
                 csc: bool = False, class_token_position: str = "end") -> None:
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f'CLASS_TOKEN_POSITION "{class_token_position}" is not one of {", ".join(CLASS_TOKEN_POSITIONS)}')
        n_cls = len(classnames)
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]

        if ctx_init:
            ctx_init = ctx_init.replace("_", " ").strip()
            n_ctx = count_tokens(ctx_init)
            with torch.no_grad():
                init = embed_tokens(clip_model, tokenize([ctx_init]))[0, 1:1 + n_ctx].clone()
            ctx_vectors = init.unsqueeze(0).repeat(n_cls, 1, 1) if csc else init
            prompt_prefix = ctx_init
        else:
            if n_ctx < 1:
                raise ValueError(f"N_CTX must be >= 1 without CTX_INIT, got {n_ctx}")
            shape = (n_cls, n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
            ctx_vectors = torch.empty(*shape, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")

        self.ctx = nn.Parameter(ctx_vectors.to(dtype))
        names = [name.replace("_", " ") for name in classnames]
        _check_prompt_length(prompt_prefix, names)
        name_lens = eot_positions(tokenize(names)) - 1
        tokenized = tokenize([f"{prompt_prefix} {name}." for name in names])
        with torch.no_grad():
            embedding = embed_tokens(clip_model, tokenized)
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :])  # class tokens, ".", EOS, padding
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer("position_index", self._position_index(n_cls, n_ctx, tokenized.shape[1], name_lens,
                                                                    class_token_position), persistent=False)
        self.n_cls, self.n_ctx, self.class_token_position = n_cls, n_ctx, class_token_position

    @staticmethod
    def _position_index(n_cls: int, n_ctx: int, length: int, name_lens: torch.Tensor, position: str) -> torch.Tensor:
        """For each class, which position of the ``end`` layout [SOS, ctx, name, rest] goes to each output slot."""
        rows = []
        for name_len in name_lens.tolist():
            ctx = list(range(1, 1 + n_ctx))
            name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
            rest = list(range(1 + n_ctx + name_len, length))
            if position == "end":
                order = [0] + ctx + name + rest
            elif position == "front":
                order = [0] + name + ctx + rest
            else:
                half = n_ctx // 2
                order = [0] + ctx[:half] + name + ctx[half:] + rest
            rows.append(order)
        return torch.tensor(rows, dtype=torch.long)

    @property
    def shares_prefix(self) -> bool:
        """A context shared by all classes in front of the class name (``end``, not CSC): SOS + context is the
        same for every class, so it can be encoded once (``encode_contexts``)."""
        return self.ctx.dim() == 2 and self.class_token_position == "end"

    def encode_contexts(self, text_encoder: nn.Module, ctx: torch.Tensor) -> torch.Tensor:
        """Raw class features with context ``ctx`` in front of every class name, SOS + context encoded once:
        ``ctx`` [M, D] -> [C, E]; one context per image (CoCoOp) [B, M, D] -> [B, C, E]."""
        lead = ctx.shape[:-2]
        sos = self.token_prefix[0].to(ctx.dtype).expand(*lead, -1, -1)
        suffix = self.token_suffix.expand(*lead, -1, -1, -1)
        return text_encoder.encode_prefixed(torch.cat([sos, ctx], dim=-2), suffix,
                                            eot_positions(self.tokenized_prompts))

    def encode_per_image(self, text_encoder: nn.Module, ctx: torch.Tensor) -> torch.Tensor:
        """Raw class features [B, C, E] for one context per image ``ctx`` [B, M, D] (CoCoOp, FSMoE): the B x C
        prompts in one (chunked) call; with the class name at the end, each image's SOS + context is encoded once
        for its C prompts (``encode_contexts``)."""
        if self.shares_prefix:
            return self.encode_contexts(text_encoder, ctx)
        n_img = ctx.shape[0]
        prompts = self.assemble(ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1))
        tokens = self.tokenized_prompts.repeat(n_img, 1)  # [B*C, L], image-major like the prompts
        return text_encoder(prompts.flatten(0, 1), tokens).view(n_img, self.n_cls, -1)

    def encode(self, text_encoder: nn.Module) -> torch.Tensor:
        """Raw class features [C, E] of the prompts (the shared prefix encoded once when there is one)."""
        if self.shares_prefix:
            return self.encode_contexts(text_encoder, self.ctx)
        return text_encoder(self(), self.tokenized_prompts)

    def forward(self) -> torch.Tensor:
        """Prompt embeddings [C, L, D]."""
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return self.assemble(ctx)

    def assemble(self, ctx: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings [..., C, L, D] of a per-class context [..., C, M, D] placed between SOS and the class
        tokens as ``class_token_position`` says; leading dims (e.g. one context per image, CoCoOp) broadcast."""
        lead = ctx.shape[:-3]
        prefix = self.token_prefix.expand(*lead, -1, -1, -1)
        suffix = self.token_suffix.expand(*lead, -1, -1, -1)
        prompts = torch.cat([prefix, ctx, suffix], dim=-2)
        if self.class_token_position == "end":
            return prompts
        index = self.position_index.unsqueeze(-1).expand(*lead, -1, -1, prompts.shape[-1])
        return prompts.gather(-2, index)


def _check_prompt_length(prompt_prefix: str, names: Sequence[str], context_length: int = 77) -> None:
    """The longest "<context> <class name>." must fit CLIP's context (SOS and EOT included); else name N_CTX."""
    ctx_len = len(bpe_encode(prompt_prefix))
    name, name_len = max(((n, len(bpe_encode(f"{n}."))) for n in names), key=lambda item: item[1])
    if 2 + ctx_len + name_len > context_length:
        raise ValueError(f"The prompt for class {name!r} needs {2 + ctx_len + name_len} tokens (SOS + {ctx_len} "
                         f"context + {name_len} for the name and '.' + EOT), but CLIP's context holds "
                         f"{context_length}: use N_CTX (or a CTX_INIT of) at most {context_length - 2 - name_len} "
                         "tokens")
