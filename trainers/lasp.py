"""LASP (Bulat & Tzimiropoulos, CVPR 2023): CoOp's learnable context regularised by a text-to-text loss.

The learned class features (context + class name through the frozen text encoder, plus a learnable correction
vector, then L2-normalised) classify the hand-crafted template features of the same classes (35 templates by
default). In base-to-new training the text loss covers every class name of the dataset ("virtual classes") while
the image cross-entropy covers the base classes only. Optionally the ViT image encoder's block LayerNorms are tuned
at 0.1x the learning rate. The learnable state (context, correction vector, tuned LayerNorms) is the checkpoint.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip_templates import dataset_template_groups, lasp_templates
from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.calibration import (VitLayerNormTuning, add_recalibration_keys, attach_recalibration,
                                            recalibrated)
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.hard_prompts import HardTemplateFeatures
from dasslite.prompting.losses import lasp_text_loss, text_loss_scale
from dasslite.prompting.model import PromptCLIP
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.prompting.trainer import ClipPromptTrainer
from dasslite.prompting.virtual_classes import text_supervision_classes

TEMPLATE_SOURCES = ("lasp", "dataset")


@register_config
def add_lasp_config(cfg) -> None:
    node = add_prompt_common(CN(), prec="amp")
    node.GRAD_CLIP_NORM = 1.0  # the authors clip at 1.0 (their AMP path)
    node.N_CTX = 4  # context length (ignored when CTX_INIT is set)
    node.CTX_INIT = "a photo of a"
    node.LAMBDA = 1.0  # text-to-text loss weight (the recipes use 5 or 10)
    node.TEMPERATURE = 0.0  # text-loss temperature; 0 = CLIP's own logit scale (1/100 for released CLIP)
    node.NOISE_PROB = 0.5  # probability per step of adding Gaussian noise to the hard features
    node.NOISE_STD = 0.05
    node.TEMPLATES = "lasp"  # lasp: LASP's 35 templates | dataset: the dataset's list in clip_templates/groups.json
    node.GROUPS_FILE = ""  # with TEMPLATES dataset: a groups file of your own (default: the shipped one)
    node.VIRTUAL_CLASSES = True  # base2new training: the text loss covers all class names (base + new)
    add_recalibration_keys(node)  # ENABLE_CORRECTION, FINETUNE_VIT_LN, VIT_LN_LR_MULT
    cfg.TRAINER.LASP = node


class LASPPromptLearner(ContextPromptLearner):
    """CoOp's context over the text-supervision classes, plus the other learnable state LASP checkpoints:
    ``correction`` (the feature-correction vector) and ``visual_ln`` (the image encoder's block LayerNorms, shared
    with it, present only when tuned)."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int = 4, ctx_init: str = "",
                 correction: bool = True, tune_vit_ln: bool = False) -> None:
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init)
        self.classnames = list(classnames)
        attach_recalibration(self, clip_model, correction, tune_vit_ln)


class LASPCLIP(PromptCLIP):
    """CLIP with a LASP prompt learner. The learner holds the text-supervision classes; ``class_index`` picks the
    image classes out of them (None: the same list). Class features do not depend on the image, so evaluation
    encodes them once (``cached_class_features``) even when the image encoder's LayerNorms were tuned."""

    def __init__(self, clip_model: nn.Module, prompt_learner: LASPPromptLearner, templates: Sequence[str],
                 class_index: Optional[Sequence[int]] = None, text_loss_weight: float = 1.0,
                 temperature: float = 0.0, noise_prob: float = 0.5, noise_std: float = 0.05) -> None:
        super().__init__(clip_model, prompt_learner)
        self.hard_features = HardTemplateFeatures(prompt_learner.classnames, templates)
        index = None if class_index is None else torch.as_tensor(list(class_index), dtype=torch.long)
        self.register_buffer("class_index", index, persistent=False)
        self.text_loss_weight = float(text_loss_weight)
        self.temperature = float(temperature)
        self.noise_prob, self.noise_std = float(noise_prob), float(noise_std)

    def encode_prompts(self) -> torch.Tensor:
        """Normalised learned features [C_text, E] of every text-supervision class (correction added first)."""
        return recalibrated(self.prompt_learner, self.prompt_learner.encode(self.text_encoder))

    def select_image_classes(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.class_index is None else features[self.class_index]

    def compute_class_features(self) -> torch.Tensor:
        return self.select_image_classes(self.encode_prompts())

    def text_loss(self, learned: torch.Tensor) -> torch.Tensor:
        """``LAMBDA`` x LASP's text-to-text loss of the learned features [C_text, E] (0 when LAMBDA is 0)."""
        if self.text_loss_weight == 0:
            return learned.new_zeros((), dtype=torch.float32)
        hard = self.hard_features(self.text_encoder)
        scale = text_loss_scale(self.temperature, self.logit_scale)
        loss = lasp_text_loss(learned, hard, scale, self.noise_prob, self.noise_std)
        return self.text_loss_weight * loss

    def forward_train(self, image: torch.Tensor, label: torch.Tensor):
        learned = self.encode_prompts()
        logits = self.logits(self.encode_image(image), self.select_image_classes(learned))
        return {"logits": logits, "loss_ce": F.cross_entropy(logits, label), "loss_text": self.text_loss(learned)}


@TRAINER_REGISTRY.register()
class LASP(VitLayerNormTuning, ClipPromptTrainer):
    CFG_NODE = "LASP"
    IMAGE_PATH_FROZEN = True  # the image encoder is frozen and unprompted (unless FINETUNE_VIT_LN)

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.LASP
        self.require_choice(cfg, "TEMPLATES", TEMPLATE_SOURCES)
        self.require_unused_at_default(cfg, "GROUPS_FILE", c.TEMPLATES == "dataset", "with TEMPLATES dataset")
        self.require_non_negative(cfg, "LAMBDA", "TEMPERATURE", "NOISE_STD", "VIT_LN_LR_MULT")
        if not 0 <= c.NOISE_PROB <= 1:
            raise ValueError(f"TRAINER.LASP.NOISE_PROB must be in [0, 1], got {c.NOISE_PROB}")

    def hard_templates(self):
        c = self.method_cfg
        if c.TEMPLATES == "lasp":
            return lasp_templates()
        return list(dataset_template_groups(self.cfg.DATASET.NAME, c.GROUPS_FILE or None).templates)

    def build_custom_clip(self, clip_model, classnames):
        c = self.method_cfg
        names, index = text_supervision_classes(self.cfg, classnames, c.VIRTUAL_CLASSES)
        print(f"Classes for the text loss: {len(names)} ({len(classnames)} with images"
              f"{f' + {len(names) - len(classnames)} virtual' if index is not None else ''})")
        learner = LASPPromptLearner(clip_model, names, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT,
                                    correction=c.ENABLE_CORRECTION, tune_vit_ln=c.FINETUNE_VIT_LN)
        templates = self.hard_templates()
        print(f"Hard templates for the text loss: {len(templates)} ({c.TEMPLATES})")
        model = LASPCLIP(clip_model, learner, templates, class_index=index, text_loss_weight=c.LAMBDA,
                         temperature=c.TEMPERATURE, noise_prob=c.NOISE_PROB, noise_std=c.NOISE_STD)
        self.track_vit_layernorms(model, learner)
        return model
