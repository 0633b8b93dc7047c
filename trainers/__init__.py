"""Every trainer module, imported so that its trainer and config node register (no import line to add by hand).

In a CoOp fork: copy ``trainers/`` and ``configs/``, ``pip install`` this repo, and in its train.py replace the
trainer imports with ``import trainers`` and call ``trainers.extend_cfg(cfg)`` inside ``extend_cfg``.
"""
from dasslite.evaluation import open_set  # noqa: F401  (declares cfg.OSR, the open-set evaluation every trainer has)
from dasslite.prompting.config import extend_cfg

from . import cocoop  # noqa: F401
from . import coop  # noqa: F401
from . import fsmoe  # noqa: F401
from . import kgcoop  # noqa: F401
from . import lasp  # noqa: F401
from . import mocoop  # noqa: F401
from . import pmoe  # noqa: F401
from . import zsclip  # noqa: F401

__all__ = ["extend_cfg"]
