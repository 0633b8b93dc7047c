"""MoCoOp (mixture of prompt learning): one soft prompt per group of hand-written templates, a top-k router per
image, a semantically grouped text-to-text loss and a hard-prompt-guided gating loss, on LASP's re-calibration.

- Experts: the dataset's template groups (``clip_templates/groups.json``, or ``GROUPS_FILE``); expert e starts
  from its group's first template (``dasslite.prompting.expert_prompts``).
- ``TEMPLATE_GROUPS``: whose groups define the experts (default: ``DATASET.NAME``). Cross-dataset and domain-
  generalisation evaluations set the *training* dataset's name, so the trained experts and router are used; a
  checkpoint records its expert templates and loading it into other experts is an error, never a partial load.
- Losses: CE + TEXT_LOSS_WEIGHT x grouped text loss + GATE_LOSS_WEIGHT x gating loss (+ optional balancing loss).
- After every test evaluation the routing per class is written next to the results (``expert_usage.*``).
"""
import json

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip_templates import dataset_template_groups
from dasslite.analysis.usage_recording import ExpertUsageRecording
from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.calibration import VitLayerNormTuning, add_recalibration_keys, attach_recalibration
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.expert_prompts import ExpertPromptLearner
from dasslite.prompting.losses import GATE_TARGETS, TEXT_LOSS_REDUCTIONS
from dasslite.prompting.mixture import MixtureOfPromptsCLIP
from dasslite.prompting.routing import ROUTER_TYPES, TopKRouter
from dasslite.prompting.trainer import ClipPromptTrainer
from dasslite.prompting.virtual_classes import text_supervision_classes


@register_config
def add_mocoop_config(cfg) -> None:
    node = add_prompt_common(CN(), prec="amp")
    node.GRAD_CLIP_NORM = 1.0  # the authors' AMP path clips at 1.0
    node.TEMPLATE_GROUPS = ""  # dataset whose template groups are the experts ("" = DATASET.NAME)
    node.GROUPS_FILE = ""  # a template-groups file of your own (default: clip_templates/groups.json)
    node.TOP_K = 2  # experts mixed per image
    node.ROUTER = "linear"  # linear (the authors') | mlp
    node.ROUTER_HIDDEN = 256  # hidden width of the mlp router
    node.ROUTER_NOISE = False  # noisy top-k gating during training
    node.BALANCE_LOSS_WEIGHT = 0.0  # load-balancing loss weight (0 = off, the authors')
    node.TEXT_LOSS_WEIGHT = 5.0
    node.TEXT_TEMPERATURE = 1.0  # grouped text loss on cosine / T; 1 = the authors' code; 0 = CLIP's logit scale
    node.TEXT_LOSS_REDUCTION = "all_experts"  # mean over all experts (the authors' scaling) | encoded (ours before)
    node.GATE_LOSS_WEIGHT = 1.0
    node.GATE_TARGET = "class"  # class: prototypes of the image's own class | agnostic: averaged over classes
    node.GATE_BOOST = 10.0  # added to the k best target scores before the softmax
    node.GATE_TEMPERATURE = 1.0
    node.VIRTUAL_CLASSES = True  # base2new training: text loss over all class names (base + new)
    add_recalibration_keys(node)  # ENABLE_CORRECTION, FINETUNE_VIT_LN, VIT_LN_LR_MULT
    node.ENCODE_ALL_EXPERTS = False  # training: encode every expert each step (the authors' code), not the selected
    node.TEXT_CHUNK_SIZE = 0  # prompts per text-encoder call (0 = all at once); bounds memory for big C
    node.EXPERT_USAGE = True  # write expert_usage.{json,csv,png} after each test evaluation
    cfg.TRAINER.MOCOOP = node


class ExpertLearner(ExpertPromptLearner):
    """The checkpointed state: expert contexts, router, correction vector, tuned ViT LayerNorms, and
    ``expert_definition`` (the experts' templates and groups as UTF-8 JSON bytes, checked on load)."""

    def __init__(self, clip_model, classnames, groups, router: nn.Module, correction: bool,
                 tune_vit_ln: bool) -> None:
        super().__init__(clip_model, classnames, groups.heads)
        self.router = router
        attach_recalibration(self, clip_model, correction, tune_vit_ln)
        definition = json.dumps({"dataset": groups.dataset, "templates": list(groups.templates),
                                 "groups": list(groups.sizes)}, sort_keys=True).encode("utf-8")
        self.register_buffer("expert_definition", torch.tensor(list(definition), dtype=torch.uint8))


def decode_definition(buffer: torch.Tensor) -> dict:
    return json.loads(bytes(buffer.cpu().tolist()).decode("utf-8"))


@TRAINER_REGISTRY.register()
class MoCoOp(ExpertUsageRecording, VitLayerNormTuning, ClipPromptTrainer):
    CFG_NODE = "MOCOOP"
    IMAGE_PATH_FROZEN = True  # the image encoder is frozen and unprompted (unless FINETUNE_VIT_LN)

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.MOCOOP
        self.require_choice(cfg, "ROUTER", ROUTER_TYPES)
        self.require_choice(cfg, "GATE_TARGET", GATE_TARGETS)
        self.require_choice(cfg, "TEXT_LOSS_REDUCTION", TEXT_LOSS_REDUCTIONS)
        self.require_unused_at_default(cfg, "ROUTER_HIDDEN", c.ROUTER == "mlp", "with ROUTER mlp")
        self.require_non_negative(cfg, "TEXT_LOSS_WEIGHT", "GATE_LOSS_WEIGHT", "BALANCE_LOSS_WEIGHT",
                                  "TEXT_TEMPERATURE", "GATE_BOOST", "VIT_LN_LR_MULT", "TEXT_CHUNK_SIZE")
        if c.GATE_TEMPERATURE <= 0:
            raise ValueError(f"TRAINER.MOCOOP.GATE_TEMPERATURE must be > 0, got {c.GATE_TEMPERATURE}")

    def template_groups(self):
        c = self.method_cfg
        return dataset_template_groups(c.TEMPLATE_GROUPS or self.cfg.DATASET.NAME, c.GROUPS_FILE or None)

    def build_custom_clip(self, clip_model, classnames):
        c = self.method_cfg
        groups = self.template_groups()
        names, index = text_supervision_classes(self.cfg, classnames, c.VIRTUAL_CLASSES)
        print(f"Experts: {len(groups.sizes)} template groups of {groups.dataset} ({len(groups.templates)} "
              f"templates), top-{c.TOP_K} routing")
        print(f"Classes for the text loss: {len(names)} ({len(classnames)} with images"
              f"{f' + {len(names) - len(classnames)} virtual' if index is not None else ''})")
        router = TopKRouter(clip_model.visual.output_dim, len(groups.sizes), k=c.TOP_K,
                            hidden_dim=c.ROUTER_HIDDEN if c.ROUTER == "mlp" else 0, noisy=c.ROUTER_NOISE)
        learner = ExpertLearner(clip_model, names, groups, router, c.ENABLE_CORRECTION, c.FINETUNE_VIT_LN)
        model = MixtureOfPromptsCLIP(
            clip_model, learner, groups.templates, groups.sizes, class_index=index,
            text_loss_weight=c.TEXT_LOSS_WEIGHT, text_temperature=c.TEXT_TEMPERATURE,
            gate_loss_weight=c.GATE_LOSS_WEIGHT, gate_target=c.GATE_TARGET, gate_boost=c.GATE_BOOST,
            gate_temperature=c.GATE_TEMPERATURE, balance_loss_weight=c.BALANCE_LOSS_WEIGHT,
            encode_all_experts=c.ENCODE_ALL_EXPERTS, text_loss_reduction=c.TEXT_LOSS_REDUCTION)
        model.text_encoder.chunk_size = c.TEXT_CHUNK_SIZE or None
        self.track_vit_layernorms(model, learner)
        return model

    # -- checkpoints: the experts must be the ones the checkpoint was trained with ------------------------------
    def load_model_state(self, name, module, checkpoint, path) -> None:
        saved = checkpoint["state_dict"].get("expert_definition")
        if saved is None:
            raise KeyError(f"{path} has no expert_definition: it is not a MoCoOp checkpoint")
        ours, theirs = decode_definition(module.expert_definition), decode_definition(saved)
        if (ours["templates"], ours["groups"]) != (theirs["templates"], theirs["groups"]):
            raise ValueError(
                f"{path} was trained with {len(theirs['groups'])} experts from the template groups of "
                f"{theirs['dataset']}, but this model has {len(ours['groups'])} experts from {ours['dataset']}'s. "
                f"Evaluate with the training experts: set TRAINER.MOCOOP.TEMPLATE_GROUPS {theirs['dataset']} "
                f"(and the same GROUPS_FILE).")
        super().load_model_state(name, module, checkpoint, path)

    def forward_backward(self, batch):
        """The base step, plus the batch's router load in the log (``router_entropy``, ``router_busiest``,
        ``router_picked``: see ``dasslite.prompting.routing.router_load``)."""
        summary = super().forward_backward(batch)
        summary.update(self.model.last_router_load)
        return summary

    # -- expert usage, recorded during test evaluations (ExpertUsageRecording) ---------------------------------
    def expert_names(self):
        return [f"{e}: {s.template}" for e, s in enumerate(self.model.prompt_learner.splits)]
