"""A config key that is set must take effect: keys set in *another* trainer's node are aliased or refused.

Every method reads only its own node ``TRAINER.<NODE>``. A key set under another node (``TRAINER.COOP.N_CTX 8``
while running KgCoOp, a habit from KgCoOp's release, which configures itself under ``TRAINER.COOP``) would
otherwise be accepted by yacs and silently ignored. :func:`resolve_foreign_keys` finds every leaf of another
trainer node whose value differs from its default and

- copies it onto the running trainer's key when the trainer declares that alias (``KEY_ALIASES``), printing a note
  (it wins over the trainer's own key, as a release's script opts win over its recipe file: the note names the
  value it replaces);
- otherwise raises an error naming the key that was set and the key to use instead.

Defaults are this library's (``get_cfg_default`` + every registered ``add_<method>_config``). Keys a fork declares
that this library does not (KgCoOp's ``TRAINER.COOP.W``, default 1.0), and a fork's own defaults (KgCoOp's boolean
``CTX_INIT False``), are compared with ``FORK_DEFAULTS``.
"""
from __future__ import annotations

import difflib
from typing import Dict, List, Mapping

from yacs.config import CfgNode

from dasslite.config import get_cfg_default

from .config import extend_cfg
from .prompt_learner import count_tokens

# Defaults other lineages' train.py give keys (KgCoOp's extend_cfg: W and ALPHA, which ours lack, and boolean
# CTX_INITs): a key at one of them was not set by the user.
FORK_DEFAULTS: Dict[str, tuple] = {"TRAINER.COOP.W": (1.0,), "TRAINER.COOP.ALPHA": (1.0,),
                                   "TRAINER.COOP.CTX_INIT": (False,), "TRAINER.COCOOP.CTX_INIT": (False,)}
# KgCoOp's CTX_INIT is a bool: any true value means its hard-coded "a photo of a", false means none.
BOOL_CTX_INIT = {True: "a photo of a", False: ""}


def default_config() -> CfgNode:
    """This library's defaults: Dassl's keys plus every registered method node."""
    return extend_cfg(get_cfg_default())


def _coerce(value, like, key: str):
    """``value`` in the type of ``like`` (the trainer's own key), for an alias from another lineage's node."""
    if isinstance(value, bool) and isinstance(like, str) and key.endswith("CTX_INIT"):
        return BOOL_CTX_INIT[value]
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(like):
        raise ValueError(f"{key} is {value!r} ({type(value).__name__}), but it stands for a "
                         f"{type(like).__name__} here")
    return value


def set_foreign_keys(cfg: CfgNode, node: str, defaults: CfgNode) -> Dict[str, object]:
    """``{"TRAINER.<OTHER>.<KEY>": value}`` for every leaf of another trainer node that differs from its default."""
    found: Dict[str, object] = {}
    for other, sub in cfg.TRAINER.items():
        if other == node or not isinstance(sub, CfgNode):
            continue
        reference = defaults.TRAINER.get(other, CfgNode())
        for key, value in sub.items():
            full = f"TRAINER.{other}.{key}"
            if isinstance(value, CfgNode):
                continue
            if key not in reference and full not in FORK_DEFAULTS:
                continue  # a fork's key we know nothing about
            if (key in reference and value == reference[key]) or any(
                    type(value) is type(d) and value == d for d in FORK_DEFAULTS.get(full, ())):
                continue  # at our default or at the fork's
            found[full] = value
    return found


def resolve_foreign_keys(cfg: CfgNode, node: str, trainer: str, aliases: Mapping[str, str]) -> List[str]:
    """Apply ``aliases`` (``"TRAINER.COOP.N_CTX" -> "N_CTX"`` of ``TRAINER.<node>``) for keys set in other trainer
    nodes, refuse every other such key; returns the notes printed. ``cfg`` is changed in place (frozen again if it
    was frozen)."""
    defaults = default_config()
    own = cfg.TRAINER[node]
    notes: List[str] = []
    frozen = cfg.is_frozen()
    cfg.defrost()
    try:
        for full, value in set_foreign_keys(cfg, node, defaults).items():
            target = aliases.get(full)
            if target is None:
                key = full.rsplit(".", 1)[1]
                if key in own:
                    hint = f"set TRAINER.{node}.{key} instead"
                else:
                    close = difflib.get_close_matches(key, list(own), n=1)
                    hint = (f"did you mean TRAINER.{node}.{close[0]}? " if close else "") + \
                        f"TRAINER.{node} has: {', '.join(own)}"
                raise ValueError(f"{full} is set to {value!r}, but the {trainer} trainer reads only TRAINER.{node}; "
                                 f"the value would be ignored: {hint}")
            converted = _coerce(value, own[target], full)
            replaced = f", replacing {own[target]!r}" if own[target] != converted else ""
            own[target] = converted
            notes.append(f"Note: {full} {value!r} is taken as TRAINER.{node}.{target} {converted!r}{replaced} "
                         f"({trainer} reads TRAINER.{node})")
    finally:
        if frozen:
            cfg.freeze()
    for note in notes:
        print(note)
    return notes


def unused_key_error(cfg: CfgNode, node: str, key: str, applies: bool, when: str) -> None:
    """Raise if ``TRAINER.<node>.<key>`` differs from its default although it cannot take effect (``applies``
    False); ``when`` says when it does (e.g. "with ROUTER mlp")."""
    value, default = cfg.TRAINER[node][key], default_config().TRAINER[node][key]
    if not applies and value != default:
        raise ValueError(f"TRAINER.{node}.{key} is set to {value!r} but takes effect only {when}; the value would "
                         f"be ignored: drop it or change that setting")


def check_context_length(cfg: CfgNode, node: str) -> None:
    """CoOp's rule, made loud: a CTX_INIT decides the context length, so a set N_CTX of another length is refused
    (CoOp, KgCoOp and LASP silently use the CTX_INIT's length)."""
    c = cfg.TRAINER[node]
    if "N_CTX" not in c or not isinstance(c.get("CTX_INIT"), str) or not c.CTX_INIT.strip():
        return
    init = c.CTX_INIT.replace("_", " ").strip()
    length = count_tokens(init)
    if c.N_CTX != default_config().TRAINER[node].N_CTX and c.N_CTX != length:
        raise ValueError(f'TRAINER.{node}.N_CTX is {c.N_CTX} but TRAINER.{node}.CTX_INIT "{init}" sets the context '
                         f"length to {length} tokens, so N_CTX would be ignored: set CTX_INIT \"\" for {c.N_CTX} "
                         f"randomly initialised context vectors, or leave N_CTX out")
