"""Which recipe each trainer runs on each dataset, and the datasets of each protocol.

``default_cfg(trainer, dataset)`` is the recipe a sweep uses without ``--cfg``: ``demo`` on the demo world, else the
per-dataset recipe (``RECIPES``: the ones the LASP and MoCoOp authors ran), else the trainer's (``DEFAULT_CFGS``).
The sweeps plan with it and the results tables group a trainer's per-dataset default recipes into one table with it,
so both live here, below both.
"""
from __future__ import annotations

from typing import Dict, Optional
# A trainer's recipe where RECIPES names none for the dataset.
DEFAULT_CFGS = {"CoOp": "vit_b16_ctxv1", "LASP": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                "MoCoOp": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                "ZeroshotCLIP": "vit_b16", "ZeroshotCLIP2": "vit_b16",
                "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1", "KgCoOp": "vit_b16_ep100_ctxv1"}
DEFAULT_CFGS["PMoE"] = "vit_b16_ep10_ctxv1"  # pMoE-style: CLIP + DINO ViT-B/16 experts, CLIP joint-space head
DEFAULT_CFGS["FSMoE"] = "vit_b16_c8_ep10_batch32_coop"  # FSMoE's recipe for the 11 CoOp datasets
# Per-dataset recipes (from the LASP authors' logs; MoCoOp mirrors them, with its own ImageNet and Food101 files).
_LASP_EP50 = "vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32"
_LASP_EP300 = "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
RECIPES: Dict[str, Dict[str, str]] = {
    "LASP": {"caltech101": _LASP_EP50, "dtd": _LASP_EP50, "ucf101": _LASP_EP50, "eurosat": _LASP_EP300,
             "food101": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b",
             "imagenet": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"},
    "MoCoOp": {"caltech101": _LASP_EP50, "dtd": _LASP_EP50, "ucf101": _LASP_EP50, "eurosat": _LASP_EP300,
               "food101": "vit_b16_c4_ep10_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
               "imagenet": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet"},
}
# Opts a trainer needs on every evaluation on a dataset other than the one it was trained on: KEY -> the training
# dataset's DATASET.NAME (MoCoOp's experts are the training dataset's template groups).
SOURCE_BOUND_OPTS = {"MoCoOp": "TRAINER.MOCOOP.TEMPLATE_GROUPS"}
# trainers without their own configs/trainers/<T>/ folder borrow another's recipes
CONFIG_FOLDER_FALLBACK = {"ZeroshotCLIP2": "ZeroshotCLIP"}
DEMO_DATASET = "demo"
# The eleven datasets of the base-to-new / few-shot / cross-dataset tables, and the four ImageNet variants.
XD_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
TRANSFER_SOURCE = "imagenet"
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)


def default_cfg(trainer: str, dataset: str) -> Optional[str]:
    """The recipe a sweep uses without ``--cfg``: demo on the demo world, else the per-dataset, else the trainer's."""
    if dataset == DEMO_DATASET:
        return DEMO_DATASET
    return RECIPES.get(trainer, {}).get(dataset) or DEFAULT_CFGS.get(trainer)
# Trainers that train nothing (every run is an evaluation), and the suffix of the <cfg> folder where the sweep's
# ``--zero-shot`` puts the evaluations of a trainer that does train (``CoOp/vit_b16_ctxv1_zeroshot``).
ZERO_SHOT_TRAINERS = ("ZeroshotCLIP", "ZeroshotCLIP2")
ZERO_SHOT_SUFFIX = "_zeroshot"
