"""pMoE-style (after Mo, Luo, Li, "Prompting Diverse Experts Together Wins More in Visual Adaptation", ICLR 2025):
several frozen ViT experts run on the same image, each with its own deep prompt tokens (EPTs); a dispatcher per
expert and prompt layer builds the expert's prompts from every expert's new EPTs, its previous prompt outputs and
its pooled patch tokens. The paper's method text and code are not public: every unknown is a config key below.

- Experts: ``EXPERTS`` ("clip" = CLIP's visual tower, or timm ViT names), weights from ``CHECKPOINTS`` (local
  files), ``TIMM_PRETRAINED`` or, for tests only, ``TIMM_RANDOM_INIT``; each converts the pipeline's CLIP-normalised
  tensor to its own size and mean/std inside the model (``dasslite.vision.preprocess``).
- Heads: ``linear`` on the fused features (VTAB-1k) or ``clip``: CLIP's joint space against the class names' text
  features (optionally a CoOp context, ``N_CTX``), so base2new / few-shot / OSR work as for the other trainers.
- After every test evaluation the dispatchers' source weights per class are written next to the results
  (``expert_usage.*``: mean weight of each expert's EPTs, the previous prompts and the patch tokens).
"""
import os.path as osp

from yacs.config import CfgNode as CN

from clip_templates import template_for
from dasslite.analysis.expert_usage import ExpertUsage
from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.prompting.trainer import ClipPromptTrainer
from dasslite.vision.dispatch import CROSS_PROJECTIONS, DISPATCHERS, source_names
from dasslite.vision.experts import build_experts, parse_timm_kwargs
from dasslite.vision.model import FUSIONS, HEADS, PMoECLIP, PMoELearner, decode_definition
from dasslite.vision.vpt import check_prompt_layers


@register_config
def add_pmoe_config(cfg) -> None:
    node = add_prompt_common(CN(), prec="amp")
    node.EXPERTS = ["clip"]  # "clip" and/or timm ViT names, e.g. vit_base_patch16_224.dino
    node.CHECKPOINTS = []  # a local checkpoint file per expert ("" = none; clip's weights are MODEL.BACKBONE.NAME)
    node.TIMM_KWARGS = []  # "NAME key=value ..." per timm expert: create_model kwargs (img_size, depth, embed_dim)
    node.TIMM_PRETRAINED = False  # let timm download its published weights for experts without a checkpoint
    node.TIMM_RANDOM_INIT = False  # allow random timm experts (tests, benchmarks); otherwise an error
    node.N_PROMPTS = 10  # prompt tokens per expert and prompt layer (N_p; 0 = frozen experts only)
    node.PROMPT_LAYERS = list(range(12))  # blocks that get dispatched prompts (VPT-deep: all)
    node.PROMPT_DROPOUT = 0.0  # dropout on the EPTs (VPT uses 0.1)
    node.DISPATCHER = "gate"  # gate | attention | topk
    node.TOPK = 2  # sources kept per image by the topk dispatcher
    node.USE_PREV_PROMPTS = True  # dispatcher source: the expert's prompt outputs of the previous block
    node.USE_PATCH_POOL = True  # dispatcher source: the mean of the expert's patch tokens
    node.ATTN_DIM = 64  # query/key width of the attention dispatcher
    node.CROSS_PROJ = "identity"  # another expert's EPTs of the same width: identity | linear (other widths: linear)
    node.FUSION = "concat"  # concat | mean of the per-expert pooled features
    node.HEAD = "clip"  # clip (joint space vs class-name text features) | linear (VTAB-1k protocol)
    node.JOINT_RESIDUAL = True  # clip head with a CLIP expert: CLIP's image feature + zero-init projection
    node.N_CTX = 0  # clip head: CoOp learnable context length (0 = the dataset's hand-written template)
    node.CTX_INIT = ""  # clip head: initial context words (sets N_CTX), e.g. "a photo of a"
    node.EXPERT_USAGE = True  # write expert_usage.{json,csv,png} after each test evaluation
    cfg.TRAINER.PMOE = node


@TRAINER_REGISTRY.register()
class PMoE(ClipPromptTrainer):
    CFG_NODE = "PMOE"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        self.require_choice(cfg, "DISPATCHER", DISPATCHERS)
        self.require_choice(cfg, "HEAD", HEADS)
        self.require_choice(cfg, "FUSION", FUSIONS)
        self.require_choice(cfg, "CROSS_PROJ", CROSS_PROJECTIONS)
        self.require_non_negative(cfg, "N_PROMPTS", "PROMPT_DROPOUT", "N_CTX", "TOPK")
        c = cfg.TRAINER.PMOE
        if c.HEAD == "linear" and cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            raise ValueError(f"TRAINER.PMOE.HEAD linear classifies the training classes only; DATASET."
                             f"SUBSAMPLE_CLASSES {cfg.DATASET.SUBSAMPLE_CLASSES} (base-to-new) needs HEAD clip")

    def build_custom_clip(self, clip_model, classnames):
        c, cfg = self.method_cfg, self.cfg
        experts = build_experts(clip_model, c.EXPERTS, c.CHECKPOINTS, parse_timm_kwargs(c.TIMM_KWARGS, c.EXPERTS),
                                pretrained=c.TIMM_PRETRAINED, allow_random=c.TIMM_RANDOM_INIT)
        layers = check_prompt_layers(c.PROMPT_LAYERS, [e.depth for e in experts], c.EXPERTS)
        context = None
        if c.HEAD == "clip" and (c.N_CTX or c.CTX_INIT):
            context = ContextPromptLearner(clip_model, classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT)
        options = dict(use_prev=c.USE_PREV_PROMPTS, use_patch=c.USE_PATCH_POOL, top_k=c.TOPK, attn_dim=c.ATTN_DIM,
                       cross_proj=c.CROSS_PROJ)
        learner = PMoELearner(experts, len(classnames), c.HEAD, c.N_PROMPTS, layers, c.DISPATCHER, options,
                              fusion=c.FUSION, prompt_dropout=c.PROMPT_DROPOUT,
                              joint_dim=clip_model.visual.output_dim, joint_residual=c.JOINT_RESIDUAL,
                              text_context=context)
        described = [f"{e.name} (D={e.width}, {e.depth} blocks, {e.input_size[0]} px)" for e in experts]
        print(f"pMoE-style: experts {described}, {c.N_PROMPTS} prompts at layers {layers}, dispatcher "
              f"{c.DISPATCHER}, head {c.HEAD}")
        template = template_for(cfg.DATASET.NAME) if c.HEAD == "clip" and context is None else "a photo of a {}."
        return PMoECLIP(clip_model, experts, learner, classnames, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD,
                        template=template)

    # -- checkpoints: the same experts, prompt layout and head -----------------------------------------------
    def load_model_state(self, name, module, checkpoint, path) -> None:
        saved = checkpoint["state_dict"].get("expert_definition")
        if saved is None:
            raise KeyError(f"{path} has no expert_definition: it is not a PMoE checkpoint")
        ours, theirs = decode_definition(module.expert_definition), decode_definition(saved)
        if ours != theirs:
            diff = {k: (theirs.get(k), ours.get(k)) for k in sorted(set(ours) | set(theirs))
                    if ours.get(k) != theirs.get(k)}
            raise ValueError(f"{path} was trained with another pMoE setup; (checkpoint, this model) differ in "
                             f"{diff}. Use the training run's TRAINER.PMOE settings.")
        super().load_model_state(name, module, checkpoint, path)

    # -- routing weights per class, recorded during test evaluations --------------------------------------------
    def parse_batch_test(self, batch):
        input, label = super().parse_batch_test(batch)
        self._batch_labels = label
        return input, label

    def test(self, split=None):
        model, c = self.model, self.method_cfg
        if (not c.EXPERT_USAGE or not self.cfg.OUTPUT_DIR or model.prompt_learner.dispatchers is None
                or (split or self.cfg.TEST.SPLIT) != "test"):
            return super().test(split)
        sources = source_names(model.expert_names)
        usage = ExpertUsage(list(self.dm.dataset.classnames), sources)
        per_dispatcher = {}

        def record(mean, recorder):
            usage.update_dense(self._batch_labels, mean)
            for key, weights in recorder.per_dispatcher.items():
                per_dispatcher[key] = per_dispatcher.get(key, 0) + weights.sum(0).double().cpu()

        model.routing_hook = record
        try:
            result = super().test(split)
        finally:
            model.routing_hook = None
        images = max(usage.total_images, 1)
        extra = {"subsample_classes": self.cfg.DATASET.SUBSAMPLE_CLASSES, "seed": self.cfg.SEED,
                 "dispatcher": c.DISPATCHER, "sources": sources,
                 "per_dispatcher_mean_weight": {k: (v / images).tolist() for k, v in per_dispatcher.items()}}
        paths = usage.write(self.cfg.OUTPUT_DIR, title=f"{self.cfg.DATASET.NAME}: pMoE dispatcher weight per class",
                            dataset=self.cfg.DATASET.NAME, extra=extra)
        print(f"Expert usage written to {', '.join(osp.basename(p) for p in paths)} in {self.cfg.OUTPUT_DIR}")
        return result
