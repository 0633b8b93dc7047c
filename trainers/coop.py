"""CoOp (Zhou et al., IJCV 2022): a learnable context in front of the class name, CLIP frozen."""
from yacs.config import CfgNode as CN

from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.model import PromptCLIP
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.prompting.trainer import ClipPromptTrainer


@register_config
def add_coop_config(cfg) -> None:
    cfg.TRAINER.COOP = add_prompt_common(CN())
    cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors (ignored when CTX_INIT is set)
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    cfg.TRAINER.COOP.CTX_INIT = ""  # e.g. "a photo of a"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end | middle | front


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    CFG_NODE = "COOP"
    IMAGE_PATH_FROZEN = True  # frozen, unprompted image encoder: evaluation may reuse cached image features

    def build_custom_clip(self, clip_model, classnames):
        c = self.method_cfg
        learner = ContextPromptLearner(clip_model, classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT, csc=c.CSC,
                                       class_token_position=c.CLASS_TOKEN_POSITION)
        return PromptCLIP(clip_model, learner)
