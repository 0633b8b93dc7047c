"""FSMoE (Full-Spectrum prompt tuning with sparse MoE, Xie, Geng et al., Neural Networks 196, 2025).

CoCoOp's per-image context in two token groups: high-level tokens shifted by a meta-net on the final image feature,
low-level tokens shifted by a sparse MoE over the class tokens of the image encoder's shallow blocks (router on the
final feature, top-k layers, one expert MLP per layer). Loss: CE + RC_WEIGHT x the routing-consistency contrastive
loss (``dasslite.prompting.routing_consistency``; its target is ``RC_TARGET``). Trainable: the context, meta-net,
router and experts; CLIP is frozen. ViT backbones only (a ResNet has no per-block class token).

Composition: ``dasslite.clip.visual`` (per-layer features), ``dasslite.prompting.layer_moe`` (the MoE),
``dasslite.prompting.full_spectrum`` (prompts and model). After each test evaluation the router's layer choice per
class is written next to the results (``expert_usage.*``, as MoCoOp's experts).
"""
from yacs.config import CfgNode as CN

from dasslite.analysis.usage_recording import ExpertUsageRecording
from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.full_spectrum import TOKEN_ORDERS, FullSpectrumCLIP, FullSpectrumPromptLearner
from dasslite.prompting.routing_consistency import RC_SIMILARITIES, RC_TARGETS
from dasslite.prompting.trainer import ClipPromptTrainer


@register_config
def add_fsmoe_config(cfg) -> None:
    node = add_prompt_common(CN())  # PREC fp16: the authors' runs (run_tiny.sh --prec fp16)
    node.N_CTX = 8  # context tokens of both groups together (the authors' default; ignored when CTX_INIT is set)
    node.CTX_INIT = ""  # e.g. "a photo of a"; its BPE tokens are the context (the authors' default: random)
    node.N_CTX_LOW = -1  # low-level tokens (-1: N_CTX // 2, the authors' halves); the rest are high-level
    node.TOKEN_ORDER = "low_high"  # low_high: low-level tokens first (the release) | high_low (their order ablation)
    node.LAYERS = ()  # 0-indexed ViT blocks with an expert each; empty = every block but the last (the release)
    node.TOP_K = 5  # layers mixed per image
    node.EXPERT_HIDDEN_MULT = 2.0  # expert hidden width = this x ViT width (768 -> 1536 at ViT-B, as released)
    node.EXPERT_RANK = 0  # > 0: low-rank experts (each weight a rank-r product); 0 = full (21.7 M params at ViT-B)
    node.ROUTER_HIDDEN_MULT = 2.0  # router MLP hidden = this x embedding width (512 -> 1024); 0 = a linear router
    node.METANET_HIDDEN_MULT = 2.0  # meta-net hidden = this x embedding width (1024 at ViT-B, not CoCoOp's 32)
    node.RC_WEIGHT = 0.1  # routing-consistency loss weight (0 = off)
    node.RC_TARGET = "router_logits"  # metanet (the release) | router_logits | router_probs | router_hidden
    node.RC_NEGATIVES = 10  # H negatives per anchor; anchors with fewer other-class images are skipped
    node.RC_TEMPERATURE = 0.01
    node.RC_SIMILARITY = "cos"  # cos | dot
    node.RC_SELF_POSITIVE = True  # the anchor may be drawn as its own positive (the release)
    node.RC_PROBS_TEMPERATURE = 0.01  # router_probs = softmax(logits / this) (the release's unused output)
    node.TEXT_CHUNK_SIZE = 2048  # most prompts (images x classes) per text-encoder call; 0 = all at once
    node.EXPERT_USAGE = True  # write expert_usage.{json,csv,png} (layers chosen per class) after each test
    cfg.TRAINER.FSMOE = node


@TRAINER_REGISTRY.register()
class FSMoE(ExpertUsageRecording, ClipPromptTrainer):
    CFG_NODE = "FSMOE"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.FSMOE
        self.require_choice(cfg, "TOKEN_ORDER", TOKEN_ORDERS)
        self.require_choice(cfg, "RC_TARGET", RC_TARGETS)
        self.require_choice(cfg, "RC_SIMILARITY", RC_SIMILARITIES)
        self.require_non_negative(cfg, "RC_WEIGHT", "EXPERT_RANK", "ROUTER_HIDDEN_MULT", "TEXT_CHUNK_SIZE")
        for key in ("EXPERT_HIDDEN_MULT", "METANET_HIDDEN_MULT", "RC_TEMPERATURE", "RC_PROBS_TEMPERATURE",
                    "RC_NEGATIVES", "TOP_K"):
            if c[key] <= 0:
                raise ValueError(f"TRAINER.FSMOE.{key} must be > 0, got {c[key]}")
        if c.RC_TARGET == "router_hidden" and c.ROUTER_HIDDEN_MULT == 0:
            raise ValueError("TRAINER.FSMOE.RC_TARGET router_hidden needs an mlp router: set ROUTER_HIDDEN_MULT > 0 "
                             "(or another RC_TARGET)")

    def build_custom_clip(self, clip_model, classnames):
        c = self.method_cfg
        learner = FullSpectrumPromptLearner(
            clip_model, classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT, n_low=c.N_CTX_LOW,
            token_order=c.TOKEN_ORDER, layers=list(c.LAYERS), top_k=c.TOP_K,
            expert_hidden_mult=c.EXPERT_HIDDEN_MULT, expert_rank=c.EXPERT_RANK,
            router_hidden_mult=c.ROUTER_HIDDEN_MULT, metanet_hidden_mult=c.METANET_HIDDEN_MULT)
        return FullSpectrumCLIP(
            clip_model, learner, chunk_size=c.TEXT_CHUNK_SIZE or None, rc_weight=c.RC_WEIGHT,
            rc_target=c.RC_TARGET, rc_negatives=c.RC_NEGATIVES, rc_temperature=c.RC_TEMPERATURE,
            rc_similarity=c.RC_SIMILARITY, rc_self_positive=c.RC_SELF_POSITIVE,
            rc_probs_temperature=c.RC_PROBS_TEMPERATURE)

    def load_model_state(self, name, module, checkpoint, path) -> None:
        """The experts must read the layers they were trained on (same count is not enough)."""
        saved = checkpoint["state_dict"].get("moe.layers")
        if saved is not None and saved.tolist() != module.layers:
            raise ValueError(f"{path} has experts for blocks {saved.tolist()}, this model for {module.layers}: set "
                             f"TRAINER.FSMOE.LAYERS {tuple(saved.tolist())}")
        super().load_model_state(name, module, checkpoint, path)

    # -- routing analysis: which layers each class selects (written after each test evaluation) ----------------------
    usage_title = "FSMoE layer routing per class"

    def expert_names(self):
        return [f"block {i}" for i in self.model.prompt_learner.layers]

    def usage_extra(self) -> dict:
        return {"trainer": "FSMoE", "experts": "ViT blocks (their class token feeds the expert)"}
