"""The one CLIP-prompt base trainer: everything CoOp-style methods share, so a method file only builds its model.

It owns CLIP loading and the input-size check, precision (fp16 / fp32 / amp / bf16), freezing, the optimizer and
scheduler over the trainable parameters, loss-dict summation with AMP and gradient clipping, LR stepping at the
last batch (Dassl's contract), class-feature caching during evaluation, and strict checkpoint loading of the
trainable state only. It runs on real Dassl or on the built-in engine (``dasslite.compat``).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from dasslite.clip import load_clip
from dasslite.compat import TrainerX, compute_accuracy
from dasslite.engine.checkpointing import CheckpointingMixin
from dasslite.engine.trainer import evaluate_split
from dasslite.features import image_feature_cache
from dasslite.optim import build_lr_scheduler, build_optimizer
from dasslite.utils.checkpoint import check_state_dict_compat, load_pretrained_weights

from .config import PRECISIONS
from .key_usage import check_context_length, resolve_foreign_keys, unused_key_error


# On the built-in engine TrainerX already has our checkpointing; on real Dassl it goes first in the MRO.
_BASES = (TrainerX,) if issubclass(TrainerX, CheckpointingMixin) else (CheckpointingMixin, TrainerX)


class ClipPromptTrainer(*_BASES):
    """Subclasses set ``CFG_NODE`` (their ``cfg.TRAINER.<NODE>``) and implement ``build_custom_clip``."""

    CFG_NODE: str = ""
    KEY_ALIASES: Dict[str, str] = {}  # another lineage's key -> ours (``resolve_foreign_keys``)
    MODEL_NAME = "prompt_learner"  # the registered module: checkpoint sub-folder, the only module set to train()
    # True only where the image path is frozen and prompt-independent: evaluation then reuses cached image-encoder
    # outputs (dasslite.features). Opt-in, so a method that prompts or tunes the image encoder never reads them.
    IMAGE_PATH_FROZEN = False

    # -- config ----------------------------------------------------------------------------------------------
    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.CFG_NODE]

    @property
    def precision(self) -> str:
        return self.method_cfg.PREC

    def check_cfg(self, cfg) -> None:
        if self.CFG_NODE not in cfg.TRAINER:
            raise KeyError(f"cfg.TRAINER.{self.CFG_NODE} is missing: call extend_cfg() before building the trainer")
        resolve_foreign_keys(cfg, self.CFG_NODE, type(self).__name__, self.KEY_ALIASES)  # set keys must take effect
        check_context_length(cfg, self.CFG_NODE)
        self.require_choice(cfg, "PREC", PRECISIONS)

    def require_choice(self, cfg, key: str, choices) -> None:
        """``TRAINER.<node>.<key>`` must be one of ``choices``; the error names the key, the value and the choices."""
        value = cfg.TRAINER[self.CFG_NODE][key]
        if value not in choices:
            raise ValueError(f'TRAINER.{self.CFG_NODE}.{key} "{value}" is not one of {", ".join(choices)}')

    def require_unused_at_default(self, cfg, key: str, applies: bool, when: str) -> None:
        """``TRAINER.<node>.<key>`` must keep its default when it cannot take effect (``when`` says when it does)."""
        unused_key_error(cfg, self.CFG_NODE, key, applies, when)

    def require_non_negative(self, cfg, *keys: str) -> None:
        """Each ``TRAINER.<node>.<key>`` must be >= 0; the error names the first key that is not, and its value."""
        node = cfg.TRAINER[self.CFG_NODE]
        for key in keys:
            if node[key] < 0:
                raise ValueError(f"TRAINER.{self.CFG_NODE}.{key} must be >= 0, got {node[key]}")

    # -- model -----------------------------------------------------------------------------------------------
    def load_clip_model(self) -> nn.Module:
        """Frozen CLIP in the precision the config asks for, checked against INPUT.SIZE."""
        backbone = self.cfg.MODEL.BACKBONE.NAME
        print(f"Loading CLIP (backbone: {backbone})")
        clip_model = load_clip(backbone)
        resolution = clip_model.visual.input_resolution
        if tuple(self.cfg.INPUT.SIZE) != (resolution, resolution):
            raise ValueError(f"INPUT.SIZE {tuple(self.cfg.INPUT.SIZE)} does not match the input resolution "
                             f"{resolution} of CLIP backbone {backbone!r}; set INPUT.SIZE ({resolution}, {resolution})")
        if self.precision in ("fp32", "amp", "bf16"):
            clip_model.float()
        if self.precision == "amp" and self.device.type != "cuda":
            print("Note: PREC amp needs CUDA; on CPU this run computes in fp32")
        return clip_model

    def build_custom_clip(self, clip_model: nn.Module, classnames: List[str]) -> nn.Module:
        """Return the method's model; it must have a ``prompt_learner`` submodule (override)."""
        raise NotImplementedError

    def is_trainable(self, param_name: str) -> bool:
        """Which parameters learn (default: the prompt learner's)."""
        return param_name.startswith(self.MODEL_NAME + ".")

    def build_model(self) -> None:
        classnames = list(self.dm.dataset.classnames)
        clip_model = self.load_clip_model()
        print(f"Building {type(self).__name__} on {len(classnames)} classes")
        self.model = self.build_custom_clip(clip_model, classnames)
        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            param.requires_grad_(self.is_trainable(name))
        learner = getattr(self.model, self.MODEL_NAME)
        if self.cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, self.cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        print(f"Trainable parameters: {sum(p.numel() for p in trainable):,}")
        self.optim = build_optimizer(self.optim_param_groups(), self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model(self.MODEL_NAME, learner, self.optim, self.sched)
        use_scaler = self.precision == "amp" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def optim_param_groups(self):
        """Parameters (or groups) the optimizer updates (override for per-group learning rates)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    # -- training ------------------------------------------------------------------------------------------
    def autocast(self):
        if self.precision == "amp" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch) -> Dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            out = self.model.forward_train(image, label)
        losses = {k: v for k, v in out.items() if k.startswith("loss")}
        if not losses:
            raise KeyError(f"{type(self.model).__name__}.forward_train returned no 'loss*' entry: {list(out)}")
        loss = sum(losses.values())
        self.backward_and_update(loss)
        summary = {"loss": loss.item()}
        if len(losses) > 1:
            summary.update({k: v.item() for k, v in losses.items()})
        summary["acc"] = compute_accuracy(out["logits"].float(), label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def backward_and_update(self, loss: torch.Tensor) -> None:
        """Zero grads, check the loss is finite, backward (scaled under AMP), clip if asked, step."""
        max_norm = self.method_cfg.GRAD_CLIP_NORM
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.model_zero_grad()
        self.detect_anomaly(loss)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if max_norm > 0:
                self.scaler.unscale_(self.optim)
                torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.scaler.step(self.optim)
            self.scaler.update()
            return
        loss.backward()
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.model_update()

    # -- evaluation ----------------------------------------------------------------------------------------
    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(input).float()

    def image_cache_refusal(self) -> Optional[str]:
        """Why evaluation must not use the image-feature cache, or None when it may (override to refuse a config)."""
        return None if self.IMAGE_PATH_FROZEN else f"{type(self).__name__} does not declare IMAGE_PATH_FROZEN"

    @contextmanager
    def eval_cache(self):
        """The class features encoded once for the block (when the model can cache them), under the same autocast
        as ``model_inference``, so the cached features are exactly what an uncached forward would compute."""
        cache = getattr(self.model, "cached_class_features", None)
        with ExitStack() as stack:
            if cache is not None:
                with self.autocast():
                    stack.enter_context(cache())
            yield

    def test(self, split=None):
        """Evaluate with the class features encoded once (``eval_cache``; open-set evaluation uses the same) and,
        where the trainer allows it, image features from the persistent cache (``image_feature_cache``)."""
        with image_feature_cache(self, split), self.eval_cache():
            return evaluate_split(self, split)

    def load_model_state(self, name: str, module: nn.Module, checkpoint: dict, path: str) -> None:
        """Load the trainable state; class-name buffers are rebuilt from the current classes, everything else must
        match exactly (a shape mismatch is an error, never a silent partial load)."""
        ignore = tuple(getattr(module, "class_dependent_keys", ()))
        state_dict = {k: v for k, v in checkpoint["state_dict"].items() if k not in ignore}
        check_state_dict_compat(module, state_dict, source=path, ignore=ignore)
        print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')
        module.load_state_dict(state_dict, strict=False)
