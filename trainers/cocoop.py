"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a meta-net, CLIP frozen.

Each image's normalised feature goes through the meta-net (Linear -> ReLU -> Linear, bottleneck vis_dim // 16) and
the output is added to every context vector, so each image is classified against its own class prompts. Trainable:
the context and the meta-net (the checkpoint holds both; the class-name buffers are rebuilt on load, so a model
trained on base classes evaluates on new ones).

Unlike the authors' code, which encodes the C prompts of each image in a Python loop (hence their batch size 1), the
B x C prompts of a batch are encoded as one batch, in chunks of ``TEXT_CHUNK_SIZE`` prompts. Class features cannot
be cached for evaluation: they depend on the image.
"""
from yacs.config import CfgNode as CN

from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.conditional import ConditionalPromptCLIP, ConditionalPromptLearner
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.trainer import ClipPromptTrainer


@register_config
def add_cocoop_config(cfg) -> None:
    node = add_prompt_common(CN())
    node.N_CTX = 16  # number of context vectors (ignored when CTX_INIT is set); the recipes use 4
    node.CTX_INIT = ""  # e.g. "a photo of a"
    # Most prompts (images x classes) the text encoder runs at once; 0 = all at once. Bounds the memory of a test
    # batch (100 images x 1000 ImageNet classes = 100k prompts) while 2048 prompts already fill a GPU's matmuls.
    node.TEXT_CHUNK_SIZE = 2048
    cfg.TRAINER.COCOOP = node


@TRAINER_REGISTRY.register()
class CoCoOp(ClipPromptTrainer):
    CFG_NODE = "COCOOP"
    IMAGE_PATH_FROZEN = True  # frozen, unprompted image encoder; the text side is conditioned on its output

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        chunk = cfg.TRAINER.COCOOP.TEXT_CHUNK_SIZE
        if chunk < 0:
            raise ValueError(f"TRAINER.COCOOP.TEXT_CHUNK_SIZE must be >= 0 (0 = all prompts at once), got {chunk}")

    def build_custom_clip(self, clip_model, classnames):
        c = self.method_cfg
        learner = ConditionalPromptLearner(clip_model, classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT)
        return ConditionalPromptCLIP(clip_model, learner, chunk_size=c.TEXT_CHUNK_SIZE or None)
