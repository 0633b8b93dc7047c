"""The published numbers beside ours (``--paper``): ``dasslite/paper_results.json``."""
from __future__ import annotations

import json
import os.path as osp
from typing import Optional
PAPER_FILE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "paper_results.json")


def load_paper(path: Optional[str] = None) -> dict:
    """The published numbers (``paper_results.json``): tables ``base2new`` (MoCoOp Table 1), ``dg``, ``topk``."""
    with open(path or PAPER_FILE, encoding="utf-8") as f:
        return json.load(f)


def paper_method(paper: dict, trainer: str) -> Optional[str]:
    """The paper's name for one of our trainers (ZeroshotCLIP -> CLIP; ZeroshotCLIP2, CoOp's prompt ensemble, is not
    the paper's single-template CLIP and has none), or None."""
    return paper.get("trainer_to_method", {}).get(trainer)
