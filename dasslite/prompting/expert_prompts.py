"""Soft prompts initialised from hand-written templates, one per expert (MoCoOp's prompt experts).

Each expert starts as one template, e.g. ``"a photo of a {}, a type of aircraft."``: the words before ``{}`` and
the words after it (up to a final ".") become learnable token vectors initialised with their CLIP token embeddings;
the class name goes where ``{}`` was; the final "." stays a frozen token (as in CoOp's prompts). So the prompt of
class c for that expert is ``[SOS] ctx_before <class tokens> ctx_after . [EOS]`` and the class position follows the
template (front for "{} texture.", middle for the aircraft template, end for "a photo of a {}.").

Token counts come from CLIP's BPE tokenizer, never from splitting on spaces. The authors' word counting made one
copy of EOS learnable for templates whose after-part starts with a space ("{} texture.") and dropped class-name
tokens for Food101's double-spaced head template; counting BPE tokens of each piece has neither problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from dasslite.clip import bpe_encode, eot_positions, tokenize


@dataclass(frozen=True)
class TemplateSplit:
    """A template cut at ``{}``: learnable ``before`` and ``after`` words, and the frozen ``tail`` ("." or "")."""

    template: str
    before: str
    after: str
    tail: str

    @property
    def position(self) -> str:
        """Where the class name sits: ``end``, ``front`` or ``middle``."""
        if self.before and self.after:
            return "middle"
        return "front" if self.after else "end"


def split_template(template: str) -> TemplateSplit:
    """Split ``template`` (exactly one ``{}``) into learnable words around the class name and a frozen final "."."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f'template {template!r} must contain exactly one "{{}}"')
    before, after = (" ".join(part.split()) for part in template.split("{}"))
    tail = ""
    if after.endswith("."):
        after, tail = after[:-1].rstrip(), "."
    if not before and not after:
        raise ValueError(f"template {template!r} has no words around {{}} to turn into a learnable context")
    return TemplateSplit(template, before, after, tail)


class ExpertPromptLearner(nn.Module):
    """One learnable context per template (``ctx[e]``: [n_before + n_after, D]) over a fixed class list.

    ``prefixed(e, token_embedding)`` gives expert e's prompts as the part all classes share (SOS + the context
    before the class name) and the rest, for ``TextEncoder.encode_prefixed``; ``forward(experts, token_embedding)``
    assembles whole prompts [n, C, L, D] from it and ``tokens(experts)`` gives their ids [n, C, L]; ``encode`` runs
    them through a ``TextEncoder``. ``L`` is cut to the longest prompt, so the text encoder never sees the padding.
    The frozen parts are embedded on the fly with CLIP's own (frozen) ``token_embedding`` (passed in, so it is not
    part of this module's state): storing E x C x 77 x D embeddings would take gigabytes for ImageNet's 20 experts
    x 1000 classes.

    Token ids and context slots depend on the class names and are non-persistent buffers: a checkpoint holds only
    the contexts, so evaluation on new class names rebuilds them.
    """

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str]) -> None:
        super().__init__()
        if not templates:
            raise ValueError("ExpertPromptLearner needs at least one template")
        self.splits = [split_template(t) for t in templates]
        self.classnames = list(classnames)
        names = [name.replace("_", " ") for name in self.classnames]
        name_ids = [bpe_encode(name) for name in names]
        context_length = clip_model.positional_embedding.shape[0]
        sos, eos = tokenize([""])[0, :2].tolist()

        ctx, all_tokens, all_slots = [], [], []
        self.n_before: List[int] = []  # learnable tokens before the class name: the prompt's first 1 + n are shared
        for split in self.splits:
            before, after, tail = bpe_encode(split.before), bpe_encode(split.after), bpe_encode(split.tail)
            self.n_before.append(len(before))
            with torch.no_grad():
                init = clip_model.token_embedding(torch.tensor(before + after, dtype=torch.long,
                                                               device=clip_model.token_embedding.weight.device))
            ctx.append(nn.Parameter(init.detach().clone().cpu().to(clip_model.dtype)))
            tokens = torch.zeros(len(names), context_length, dtype=torch.long)
            slots = torch.full((len(names), context_length), -1, dtype=torch.long)
            for c, ids in enumerate(name_ids):
                seq = [sos] + before + ids + after + tail + [eos]
                if len(seq) > context_length:
                    raise ValueError(f"the prompt of class {names[c]!r} with template {split.template!r} is "
                                     f"{len(seq)} tokens, longer than CLIP's context length {context_length}")
                tokens[c, :len(seq)] = torch.tensor(seq)
                slots[c, 1:1 + len(before)] = torch.arange(len(before))
                start = 1 + len(before) + len(ids)
                slots[c, start:start + len(after)] = torch.arange(len(before), len(before) + len(after))
            all_tokens.append(tokens)
            all_slots.append(slots)
        self.ctx = nn.ParameterList(ctx)
        tokens, slots = torch.stack(all_tokens), torch.stack(all_slots)
        self.length = int(eot_positions(tokens.reshape(-1, context_length)).max()) + 1
        self.register_buffer("prompt_tokens", tokens, persistent=False)  # [E, C, 77]
        self.register_buffer("ctx_slots", slots, persistent=False)  # [E, C, 77]: context row, or -1 (frozen token)
        for e, split in enumerate(self.splits):
            print(f'Expert {e}: "{split.template}" -> {self.ctx[e].shape[0]} learnable tokens, class {split.position}')

    @property
    def num_experts(self) -> int:
        return len(self.splits)

    @property
    def n_cls(self) -> int:
        return len(self.classnames)

    def context_sizes(self) -> List[int]:
        return [p.shape[0] for p in self.ctx]

    def _expert_list(self, experts: Optional[Sequence[int]]) -> List[int]:
        if experts is None:
            return list(range(self.num_experts))
        return [int(e) for e in (experts.tolist() if torch.is_tensor(experts) else experts)]

    def tokens(self, experts: Optional[Sequence[int]] = None, full_length: bool = False) -> torch.Tensor:
        """Token ids [n, C, L] of the experts' prompts (L = 77 with ``full_length``)."""
        ids = self._expert_list(experts)
        length = self.prompt_tokens.shape[-1] if full_length else self.length
        return self.prompt_tokens[ids, :, :length]

    def forward(self, experts: Optional[Sequence[int]], token_embedding: nn.Module,
                full_length: bool = False) -> torch.Tensor:
        """Prompt embeddings [n, C, L, D] of ``experts`` (None: all), assembled from ``prefixed``: frozen token
        embeddings with each expert's context vectors in its slots. Gradients reach only the requested contexts."""
        length = self.prompt_tokens.shape[-1] if full_length else self.length
        out = []
        for e in self._expert_list(experts):
            prefix, suffix, _ = self.prefixed(e, token_embedding, length)
            out.append(torch.cat([prefix.expand(suffix.shape[0], -1, -1), suffix], dim=1))
        return torch.stack(out)

    def encode(self, text_encoder: nn.Module, experts: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Raw class features [n, C, E] of ``experts`` (None: all). Each expert's SOS + leading context is encoded
        once for all classes, and experts whose leading parts have the same length go through the encoder in one
        call (one prefix per expert), so a step costs a few calls rather than one per expert."""
        ids = self._expert_list(experts)
        by_prefix: Dict[int, List[int]] = {}
        for e in ids:
            by_prefix.setdefault(self.n_before[e], []).append(e)
        feats: Dict[int, torch.Tensor] = {}
        for group in by_prefix.values():
            prefixes, suffixes, eots = zip(*(self.prefixed(e, text_encoder.token_embedding) for e in group))
            out = text_encoder.encode_prefixed(torch.stack(prefixes), torch.stack(suffixes), torch.stack(eots))
            feats.update(zip(group, out.unbind(0)))
        return torch.stack([feats[e] for e in ids])

    def prefixed(self, expert: int, token_embedding: nn.Module, length: Optional[int] = None):
        """Expert ``expert``'s prompts split for ``TextEncoder.encode_prefixed``: the part every class shares
        (SOS + the context before the class name) ``[P, D]``, the rest ``[C, L - P, D]`` (L: ``length``, default
        the longest prompt), and EOT positions [C]."""
        e = int(expert)
        length = length or self.length
        p_len = 1 + self.n_before[e]
        tokens = self.prompt_tokens[e, :, :length]
        ctx = self.ctx[e]
        sos = token_embedding(tokens[0, :1])
        prefix = torch.cat([sos, ctx[:self.n_before[e]].to(sos.dtype)])
        suffix = token_embedding(tokens[:, p_len:])
        if ctx.shape[0] > self.n_before[e]:  # learnable words after the class name
            slot = self.ctx_slots[e, :, p_len:length]
            suffix = torch.where((slot >= 0).unsqueeze(-1), ctx.to(suffix.dtype)[slot.clamp(min=0)], suffix)
        return prefix, suffix, eot_positions(tokens)
