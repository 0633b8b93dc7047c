"""Zero-shot CLIP: the dataset's hand-written template (ZeroshotCLIP) or a 7-template ensemble (ZeroshotCLIP2)."""
from yacs.config import CfgNode as CN

from clip_templates import imagenet_templates_select, template_for
from dasslite.compat import TRAINER_REGISTRY
from dasslite.prompting.config import add_prompt_common, register_config
from dasslite.prompting.model import HardPromptCLIP
from dasslite.prompting.trainer import ClipPromptTrainer


@register_config
def add_zsclip_config(cfg) -> None:
    node = add_prompt_common(CN())
    del node["GRAD_CLIP_NORM"]  # nothing is trained: a clipping norm could never take effect
    cfg.TRAINER.ZSCLIP = node


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipPromptTrainer):
    """Nothing is trained or registered: ``--eval-only`` without ``--model-dir`` just tests."""

    CFG_NODE = "ZSCLIP"
    IMAGE_PATH_FROZEN = True  # frozen, unprompted image encoder: evaluation may reuse cached image features

    def templates(self):
        return [template_for(self.cfg.DATASET.NAME)]

    def build_model(self) -> None:
        clip_model = self.load_clip_model().to(self.device)  # encode the class prompts on the GPU, not the CPU
        templates = self.templates()
        print(f"Prompts: {templates}")
        self.model = HardPromptCLIP(clip_model, list(self.dm.dataset.classnames), templates).to(self.device)
        self.model.eval().requires_grad_(False)  # nothing learns (and the feature cache sees a frozen encoder)

    def train(self):
        raise RuntimeError("ZeroshotCLIP has nothing to train: run it with --eval-only")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """CLIP's prompt ensembling over a 7-template ImageNet selection (+ the dataset template off ImageNet)."""

    def templates(self):
        templates = imagenet_templates_select()
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(template_for(self.cfg.DATASET.NAME))
        return templates
