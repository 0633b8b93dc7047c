"""yacs merges whose errors name the file, the key, and the valid keys (yacs only says "Non-existent config key")."""
from __future__ import annotations

import difflib
from typing import List, Optional

import yaml
from yacs.config import CfgNode


# Keys other lineages' releases use that live elsewhere here: the error names the key to use.
MOVED_KEYS = {
    "TRAINER.COOP.W": "TRAINER.KGCOOP.W (KgCoOp's loss weight; its release keeps it under TRAINER.COOP)",
    "TRAINER.COOP.ALPHA": "nothing: KgCoOp's release declares TRAINER.COOP.ALPHA but never reads it; drop it",
}


def _explain_bad_key(cfg: CfgNode, full_key: str, source: str) -> str:
    if full_key in MOVED_KEYS:
        return f'{source}: "{full_key}" is not a config key here; use {MOVED_KEYS[full_key]}.'
    parts = full_key.split(".")
    node, path = cfg, []
    for part in parts[:-1]:
        if isinstance(node, CfgNode) and part in node:
            node, path = node[part], path + [part]
        else:
            break
    prefix = ".".join(path)
    bad = parts[len(path)]
    valid = sorted(node.keys()) if isinstance(node, CfgNode) else []
    close = difflib.get_close_matches(bad, valid, n=1)
    hint = f' Did you mean "{(prefix + "." if prefix else "") + close[0]}"?' if close else ""
    where = prefix or "the top level"
    return (f'{source}: "{full_key}" is not a config key.{hint} Valid keys under {where}: {", ".join(valid)}. '
            "(Method keys exist only once their trainer module declared them.)")


def _find_bad_key(cfg: CfgNode, message: str) -> Optional[str]:
    for marker in ("Non-existent config key: ", "Non-existent key: "):
        if marker in message:
            return message.split(marker, 1)[1].strip().strip("'\"")
    return None


def merge_from_file_checked(cfg: CfgNode, path: str) -> None:
    """``cfg.merge_from_file`` with a clear error for a missing file or an unknown key."""
    import os.path as osp

    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file not found: "{path}"')
    try:
        cfg.merge_from_file(path)
    except yaml.YAMLError as exc:
        raise ValueError(f'Config file "{path}" is not valid YAML: {exc}. Fix the line it names '
                         "(indentation, a missing ':' or an unclosed quote)") from None
    except KeyError as exc:
        key = _find_bad_key(cfg, str(exc))
        if key is None:
            raise
        raise KeyError(_explain_bad_key(cfg, key, f'Config file "{path}"')) from None


def merge_from_list_checked(cfg: CfgNode, opts: List[str]) -> None:
    """``cfg.merge_from_list`` with a clear error for an odd-length list, unknown key or wrong type."""
    if len(opts) % 2:
        raise ValueError(f"Command-line opts must be KEY VALUE pairs; got an odd number of items: {opts}")
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, AssertionError) as exc:
            bad = _find_bad_key(cfg, str(exc)) or key
            raise KeyError(_explain_bad_key(cfg, bad, "Command-line opts")) from None
        except ValueError as exc:
            raise ValueError(f'Command-line opts: bad value {value!r} for "{key}": {exc}') from None
