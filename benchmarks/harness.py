"""Building and timing one trainer without data: a random-weight CLIP of a given size, synthetic batches, and the
trainer's own ``build_model`` / ``forward_backward`` / ``test`` (so precision, AMP, freezing, the optimizer over the
trainable parameters and the class-feature cache are exactly what a real run uses).

The *reference path* is the same trainer switched to what CoOp-lineage code does without our engine: every
``TextEncoder`` runs CLIP's own blocks over all 77 positions (``TextEncoder.reference_path``), class features are
re-encoded for every test batch (no ``cached_class_features``), instance-conditioned models run a Python loop over
the images of a batch (image features still computed for the whole batch at once, as CoCoOp does), and the
weights are fp16 (``PREC fp16``, as OpenAI releases them) unless asked otherwise. A mixture of prompt experts
(MoCoOp) also gets full 77-token expert prompts and encodes every expert in every training step, as the authors'
code does (``use_full_length_prompts``, ``encode_every_expert_in_training``).
"""
from __future__ import annotations

import copy
import functools
import gc
import glob
import inspect
import io
import math
import os
import random
import time
from collections import OrderedDict
from contextlib import contextmanager, nullcontext, redirect_stdout
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# CLIP's published sizes (OpenAI's model card / build_model); "tiny" is the CPU smoke size of the test suite.
ARCHS: Dict[str, Dict[str, int]] = {
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                     transformer_width=768, transformer_heads=12, transformer_layers=12),
    "tiny": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 transformer_width=64, transformer_heads=1, transformer_layers=2),
}

# Logit agreement, in cosine units (|delta logit| / logit scale), by the coarser of the two precisions compared.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "amp": 1e-2, "bf16": 5e-2}

OOM_ERRORS: Tuple[type, ...] = tuple({getattr(torch, "OutOfMemoryError", RuntimeError),
                                      getattr(torch.cuda, "OutOfMemoryError", RuntimeError)} - {RuntimeError})

GIB = float(1 << 30)


# -- environment --------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> Optional[float]:
    """Peak memory allocated by tensors since the last reset (GiB); None off CUDA (not measured)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / GIB


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def environment(device: torch.device) -> Dict[str, Any]:
    """What a results table must name: GPU, torch, CUDA, cuDNN, Python."""
    import platform

    info: Dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gpu": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1),
                    gpu_capability=f"{props.major}.{props.minor}")
    return info


# -- models and configs -------------------------------------------------------------------------------------------
def random_clip(arch: str, device: torch.device, seed: int = 0) -> nn.Module:
    """CLIP of ``arch``'s real size with random weights, in the dtypes OpenAI's ``build_model`` gives (fp16 matmul and
    conv weights), kept on the CPU; each trainer gets a deep copy. Initialised on ``device`` (fast), then moved."""
    from dasslite.clip._import import import_clip
    from dasslite.clip.tiny import build_tiny_clip

    if arch.startswith("open_clip:"):
        return random_open_clip(arch, device, seed)
    if arch not in ARCHS:
        raise KeyError(f'unknown arch "{arch}"; known: {", ".join(ARCHS)} or open_clip:ARCH[/PRETRAINED]')
    with (torch.device(device) if device.type == "cuda" else nullcontext()):
        model = build_tiny_clip(**ARCHS[arch], seed=seed)
    import_clip().model.convert_weights(model)
    return model.cpu().eval()


def random_open_clip(arch: str, device: torch.device, seed: int = 0) -> nn.Module:
    """``open_clip:ARCH``: that open_clip architecture with random weights (built in code, never downloaded), fp16
    like OpenAI's; ``open_clip:ARCH/PRETRAINED`` or ``/PATH``: loaded as ``MODEL.BACKBONE.NAME`` would load it."""
    import open_clip

    from dasslite.clip import load_clip
    from dasslite.clip.open_clip_backbone import parse_open_clip_backbone, wrap_open_clip

    name, pretrained = parse_open_clip_backbone(arch)
    if pretrained:
        return load_clip(arch).eval()
    with torch.random.fork_rng(devices=[]), (torch.device(device) if device.type == "cuda" else nullcontext()):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    return wrap_open_clip(model, name, arch).cpu().eval()


def arch_arg(value: str) -> str:
    """argparse type of ``--arch``: an ``ARCHS`` name or ``open_clip:ARCH[/PRETRAINED]``."""
    import argparse

    if value in ARCHS or value.startswith("open_clip:"):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(ARCHS)} or open_clip:ARCH[/PRETRAINED]")


def arch_resolution(arch: str) -> int:
    """Input resolution of a benchmark backbone (an ``ARCHS`` name or ``open_clip:ARCH[/...]``)."""
    if arch.startswith("open_clip:"):
        import open_clip

        from dasslite.clip.open_clip_backbone import parse_open_clip_backbone

        size = (open_clip.get_model_config(parse_open_clip_backbone(arch)[0]) or {}).get("vision_cfg", {})
        size = size.get("image_size", 224)
        return int(size[0] if isinstance(size, (list, tuple)) else size)
    return ARCHS[arch]["image_resolution"]


def prompt_trainer_names(registry) -> List[str]:
    """Registered trainers that are CLIP-prompt trainers (real Dassl's registry also holds Dassl's own trainers)."""
    from dasslite.prompting.trainer import ClipPromptTrainer

    names = []
    for name in registry.registered_names():
        cls = registry.get(name)
        if isinstance(cls, type) and issubclass(cls, ClipPromptTrainer):
            names.append(name)
    return names


def default_config_file(trainer: str) -> Optional[str]:
    """The trainer's ViT-B/16 recipe: ``configs/trainers/<T>/vit_b16*.yaml``, preferring the base-to-new ``ctxv1``
    ones, then the shortest name (batch size and backbone are overridden anyway). None when the folder has none."""
    candidates = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "trainers", trainer, "vit_b16*.yaml")))
    if not candidates:
        return None
    candidates.sort(key=lambda p: ("ctxv1" not in os.path.basename(p), len(os.path.basename(p)), p))
    return candidates[0]


def mocoop_template_groups(n_cls: int) -> str:
    """Whose template groups are MoCoOp's experts at ``n_cls`` classes: those of the dataset of that size, so the
    expert count is the one a real run has there. ImageNet's 20 groups from C = 1000 up, Caltech101's 5 below it
    (Caltech101 has 100 classes)."""
    return "ImageNet" if n_cls >= 1000 else "Caltech101"


def method_settings(cfg, node: str, n_cls: Optional[int], arch: Optional[str] = None) -> None:
    """What the benchmark fixes per method, before ``--opts`` (which can override it)."""
    if node == "FSMOE" and "FSMOE" in cfg.TRAINER and arch in ARCHS:  # top-k of at most the backbone's shallow blocks
        cfg.TRAINER.FSMOE.TOP_K = min(cfg.TRAINER.FSMOE.TOP_K, max(ARCHS[arch]["vision_layers"] - 1, 1))
    if node == "MOCOOP" and "MOCOOP" in cfg.TRAINER:
        if n_cls is not None:
            cfg.TRAINER.MOCOOP.TEMPLATE_GROUPS = mocoop_template_groups(n_cls)
        cfg.TRAINER.MOCOOP.EXPERT_USAGE = False  # an analysis written to OUTPUT_DIR after each test(), not the model
    if node == "PMOE" and "PMOE" in cfg.TRAINER:  # the CLIP expert alone, prompted at every block of the arch
        depth = ARCHS.get(cfg.MODEL.BACKBONE.NAME.replace("random-weight ", ""), {}).get("vision_layers", 1)
        cfg.TRAINER.PMOE.EXPERTS, cfg.TRAINER.PMOE.CHECKPOINTS = ["clip"], []
        cfg.TRAINER.PMOE.PROMPT_LAYERS = list(range(depth))
        cfg.TRAINER.PMOE.EXPERT_USAGE = False  # (multi-expert timings: benchmarks/bench_pmoe.py)


def build_cfg(trainer_cls: type, arch: str, config_file: Optional[str], prec: Optional[str], batch: int,
              eval_batch: int, opts: Sequence[str] = (), n_cls: Optional[int] = None):
    """``train.setup_cfg``'s merge order (defaults -> every method node -> trainer YAML -> opts), then what the
    benchmark fixes: the backbone (a random-weight one, never downloaded), input size, batch sizes, precision,
    ``SUBSAMPLE_CLASSES all`` (so virtual classes never rebuild a dataset) and ``method_settings``."""
    from dasslite.compat import get_cfg_default
    from dasslite.config import merge_from_file_checked, merge_from_list_checked
    from dasslite.prompting.config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    if config_file:
        merge_from_file_checked(cfg, config_file)
    resolution = arch_resolution(arch)
    cfg.TRAINER.NAME = trainer_cls.__name__
    cfg.DATASET.NAME = "ImageNet"  # zero-shot template "a photo of a {}." and any per-dataset template list
    cfg.MODEL.BACKBONE.NAME = f"random-weight {arch}"
    cfg.INPUT.SIZE = (resolution, resolution)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch
    cfg.DATALOADER.TEST.BATCH_SIZE = eval_batch
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OUTPUT_DIR = ""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # base2new's virtual classes would rebuild the (absent) dataset
    node = getattr(trainer_cls, "CFG_NODE", "")
    if prec and node:
        cfg.TRAINER[node].PREC = prec
    method_settings(cfg, node, n_cls, arch)
    merge_from_list_checked(cfg, list(opts))
    cfg.freeze()
    return cfg


# How many of ImageNet's 1000 CLIP class names (CoOp's classnames.txt) have each BPE token count: mean 2.2, max 12.
# The spread matters: a padded batch pays for the longest name, length buckets for each bucket's longest.
IMAGENET_NAME_TOKENS = {1: 246, 2: 508, 3: 154, 4: 50, 5: 22, 6: 10, 7: 8, 9: 1, 12: 1}


@functools.lru_cache(maxsize=None)
def _one_token_words() -> Tuple[str, ...]:
    """Whole lower-case words that are one CLIP BPE token each, in vocabulary order (deterministic)."""
    from dasslite.clip import import_clip
    vocab = import_clip().clip._tokenizer.encoder
    return tuple(w[:-4] for w in vocab if w.endswith("</w>") and w[:-4].isalpha() and w[:-4].islower()
                 and len(w) >= 8)


def class_names(n: int) -> List[str]:
    """``n`` distinct synthetic class names whose BPE lengths follow ImageNet's (``IMAGENET_NAME_TOKENS``): evenly
    spaced quantiles of that distribution, its shortest and longest included, in a fixed shuffled order."""
    if n < 1:
        return []
    lengths = sorted(k for k, count in IMAGENET_NAME_TOKENS.items() for _ in range(count))
    picks = [lengths[round(i * (len(lengths) - 1) / max(n - 1, 1))] for i in range(n)]
    order = list(range(n))
    random.Random(0).shuffle(order)
    words = _one_token_words()
    names, next_word = [], 0
    for i in order:
        k = picks[i]
        names.append(" ".join(words[(next_word + j) % len(words)] for j in range(k)))
        next_word += k
    return names


def _engine_init(trainer: Any) -> None:
    """Run only the engine's ``TrainerBase.__init__`` (model/optimizer/scheduler registries), on either engine."""
    for klass in type(trainer).__mro__:
        if klass.__name__ == "TrainerBase" and "__init__" in vars(klass):
            klass.__init__(trainer)
            return
    raise TypeError(f"{type(trainer).__name__} has no TrainerBase in its MRO")


def build_trainer(trainer_cls: type, cfg, clip_master: nn.Module, classnames: Sequence[str], device: torch.device,
                  verbose: bool = False):
    """The trainer as ``build_trainer(cfg)`` makes it, minus the data: ``build_model`` runs unchanged (it builds the
    model with ``build_custom_clip``, freezes, moves, builds the optimizer and
    scheduler, registers, sets up AMP) on a deep copy of ``clip_master`` instead of a downloaded CLIP."""
    from dasslite.prompting import trainer as prompt_trainer_module

    trainer = trainer_cls.__new__(trainer_cls)
    _engine_init(trainer)
    trainer.cfg = cfg
    trainer.device = device
    trainer.check_cfg(cfg)
    names = list(classnames)
    lab2cname = {i: name for i, name in enumerate(names)}
    dataset = SimpleNamespace(classnames=names, lab2cname=lab2cname, num_classes=len(names))
    trainer.dm = SimpleNamespace(dataset=dataset, num_classes=len(names), lab2cname=lab2cname)
    trainer.num_classes, trainer.lab2cname = len(names), lab2cname
    trainer.start_epoch = trainer.epoch = 0
    trainer.max_epoch = cfg.OPTIM.MAX_EPOCH
    trainer.output_dir = cfg.OUTPUT_DIR
    trainer.batch_idx, trainer.num_batches = 0, 1 << 30  # never "the last batch": no LR step inside the timing
    trainer.train_loader_x = trainer.train_loader_u = trainer.val_loader = trainer.test_loader = None
    trainer.evaluator = CountingEvaluator()

    def fresh_clip(*_args, **_kwargs) -> nn.Module:
        return copy.deepcopy(clip_master)

    original = prompt_trainer_module.load_clip
    prompt_trainer_module.load_clip = fresh_clip
    try:
        with (nullcontext() if verbose else redirect_stdout(io.StringIO())):
            trainer.build_model()
    finally:
        prompt_trainer_module.load_clip = original
    return trainer


def trainable_parameters(trainer) -> int:
    """Parameters the trainer's optimizer updates (0 when it registered no optimizer: zero-shot CLIP)."""
    optims = [o for o in getattr(trainer, "_optims", {}).values() if o is not None]
    return sum(p.numel() for o in optims for group in o.param_groups for p in group["params"] if p.requires_grad)


def is_instance_conditioned(model: nn.Module) -> bool:
    """Whether class features depend on the image (CoCoOp): the model says so with ``instance_conditioned``, else
    a model with neither hand-written features nor a class-feature cache is taken to be."""
    from dasslite.prompting.model import HardPromptCLIP

    flag = getattr(model, "instance_conditioned", None)
    if flag is not None:
        return bool(flag)
    return not isinstance(model, HardPromptCLIP) and not hasattr(model, "cached_class_features")


# -- the reference path -------------------------------------------------------------------------------------------
class LoopMismatch(RuntimeError):
    """The model does not call its image encoder exactly once per image (the batched-features shortcut is off)."""


class _BatchImageFeatures(nn.Module):
    """Stands in for the image encoder inside a per-image loop: the first call encodes the whole batch (as CoCoOp
    does before its loop), each call returns the next image's row."""

    def __init__(self, encoder: nn.Module, images: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.images = images
        self.features: Optional[torch.Tensor] = None
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise LoopMismatch(f"per-image loop: the image encoder got a batch of {x.shape[0]}, expected 1")
        if self.features is None:
            self.features = self.encoder(self.images.to(device=x.device, dtype=x.dtype))
        if self.calls >= self.images.shape[0]:
            raise LoopMismatch("per-image loop: the image encoder was called more than once per image")
        i = self.calls
        self.calls += 1
        if isinstance(self.features, tuple):  # per-layer features (FSMoE's LayerFeatures): each field's row
            return type(self.features)(*(t[i:i + 1] for t in self.features))
        return self.features[i:i + 1]


def per_image(model: nn.Module, fn: Callable, image: torch.Tensor, *others: torch.Tensor,
              notes: Optional[List[str]] = None) -> List[Any]:
    """``[fn(image[i:i+1], *(t[i:i+1] for t in others)) for i]`` with the image encoder run once on the batch; if
    the model does not call its image encoder once per image, the loop is redone with it run per image (noted)."""
    def loop() -> List[Any]:
        return [fn(image[i:i + 1], *(t[i:i + 1] for t in others)) for i in range(image.shape[0])]

    encoder = getattr(model, "image_encoder", None)
    if not isinstance(encoder, nn.Module):
        return loop()
    server = _BatchImageFeatures(encoder, image)
    model.image_encoder = server
    try:
        outs = loop()
        if server.calls != image.shape[0]:
            raise LoopMismatch(f"the image encoder was called {server.calls} times for {image.shape[0]} images")
        return outs
    except LoopMismatch as exc:
        message = f"image encoder run per image in the reference loop ({exc})"
    finally:
        model.image_encoder = encoder
    if notes is not None and message not in notes:
        notes.append(message)
    return loop()


def _takes_keyword(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def use_full_length_prompts(model: nn.Module) -> int:
    """Prompt learners that cut their prompts to the longest one and have a ``full_length`` switch on both
    ``forward`` and ``tokens`` (MoCoOp's ``ExpertPromptLearner``) are made to give all 77 positions, as CoOp-lineage
    learners do (CLIP's own blocks need them: the positional embedding and the mask are 77 long). Returns how many."""
    switched = 0
    for module in model.modules():
        tokens = getattr(module, "tokens", None)
        if not (callable(tokens) and _takes_keyword(module.forward, "full_length")
                and _takes_keyword(tokens, "full_length")):
            continue
        module.forward = functools.partial(module.forward, full_length=True)
        module.tokens = functools.partial(tokens, full_length=True)
        switched += 1
    return switched


def _mixture_types():
    """(MixtureOfPromptsCLIP, Routing), or None on a tree without MoCoOp."""
    try:
        from dasslite.prompting.mixture import MixtureOfPromptsCLIP
        from dasslite.prompting.routing import Routing
    except ImportError:
        return None
    return MixtureOfPromptsCLIP, Routing


def encode_every_expert_in_training(model: nn.Module) -> bool:
    """A mixture of prompt experts (MoCoOp) made to encode all E experts in every training step, as the authors'
    code does at batch size >= 4 (ours encodes only the experts some image selected). The routing is unchanged:
    each image still mixes its own top-k experts; the text loss then covers every expert, as theirs does."""
    types = _mixture_types()
    if types is None or not isinstance(model, types[0]):
        return False

    class EveryExpert(types[1]):
        def used_experts(self) -> torch.Tensor:
            return torch.arange(self.num_experts, device=self.indices.device)

    route = model.route

    def route_to_every_expert(image_features: torch.Tensor) -> Any:
        routing = route(image_features)
        return EveryExpert(routing.logits, routing.indices, routing.weights)

    model.route = route_to_every_expert
    return True


def spread_routing(model: nn.Module) -> bool:
    """A mixture of prompt experts (MoCoOp) made to route image b of a batch to experts ``(b*k + j) mod E``,
    j < k, with weights the softmax of the router's own logits there (so the router still learns and the gating
    loss is unchanged): a batch of B images uses min(E, B*k) experts, as a trained router spreading a batch over its
    experts does. The random-weight router sends every synthetic image to the same k experts, which would time
    training with k experts encoded instead of (up to) E. Deterministic, so both paths route alike. True if
    applied."""
    types = _mixture_types()
    if types is None or not isinstance(model, types[0]):
        return False
    routing_type = types[1]
    route = model.route

    def route_spread(image_features: torch.Tensor) -> Any:
        routing = route(image_features)
        n_img, k = routing.indices.shape
        rows = torch.arange(n_img, device=routing.indices.device)[:, None] * k
        indices = (rows + torch.arange(k, device=rows.device)[None]) % routing.num_experts
        weights = routing.logits.gather(1, indices).float().softmax(dim=-1)
        return routing_type(routing.logits, indices, weights)

    model.route = route_spread
    return True


def experts_per_step(trainer, images: torch.Tensor) -> Optional[int]:
    """How many distinct experts a mixture's routing selects for ``images`` (None: not a mixture)."""
    types = _mixture_types()
    model = trainer.model
    if types is None or not isinstance(model, types[0]):
        return None
    with torch.no_grad(), trainer.autocast():
        return int(model.route(model.encode_image(images)).used_experts().numel())


def use_reference_path(trainer, instance_conditioned: bool) -> Dict[str, Any]:
    """Switch a built trainer to the reference path (in place). Returns what was switched, for the record."""
    from dasslite.clip.text import TextEncoder

    model = trainer.model
    encoders = [m for m in model.modules() if isinstance(m, TextEncoder)]
    for encoder in encoders:
        if "reference_path" not in vars(encoder):
            raise RuntimeError("dasslite.clip.text.TextEncoder has no reference_path switch: the benchmark's hook "
                               "in TextEncoder.__init__/forward is missing")
        encoder.reference_path = True
    full_length = use_full_length_prompts(model)
    every_expert = encode_every_expert_in_training(model)
    if hasattr(model, "cached_class_features"):
        model.cached_class_features = None  # ClipPromptTrainer.test() then re-encodes for every batch
    state = SimpleNamespace(train_loops=0, eval_loops=0, notes=[])
    if instance_conditioned:
        forward_train = model.forward_train
        model_inference = trainer.model_inference

        def looped_forward_train(image: torch.Tensor, label: torch.Tensor) -> Dict[str, torch.Tensor]:
            state.train_loops += 1
            outs = per_image(model, forward_train, image, label, notes=state.notes)
            result = {"logits": torch.cat([o["logits"] for o in outs])}
            for key in outs[0]:
                if key.startswith("loss"):
                    result[key] = torch.stack([o[key].float() for o in outs]).mean()
            return result

        def looped_model_inference(image: torch.Tensor) -> torch.Tensor:
            state.eval_loops += 1
            return torch.cat(per_image(model, model_inference, image, notes=state.notes))

        model.forward_train = looped_forward_train
        trainer.model_inference = looped_model_inference
    return {"text_encoders_switched": len(encoders), "cache_disabled": True,
            "per_image_loop": instance_conditioned, "full_length_learners": full_length,
            "every_expert_in_training": every_expert, "_state": state}


# -- measurements -------------------------------------------------------------------------------------------------
class CountingEvaluator:
    """Stands in for Dassl's Classification evaluator: counts correct predictions (one host sync per batch, like the
    real one), and keeps the outputs when asked (the agreement probe)."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.reset()

    def reset(self) -> None:
        self._correct, self._total = 0, 0
        self.outputs: List[torch.Tensor] = []

    def process(self, output: torch.Tensor, label: torch.Tensor) -> None:
        self._correct += int(output.argmax(1).eq(label).sum().item())
        self._total += int(label.shape[0])
        if self.keep:
            self.outputs.append(output.detach().float().cpu())

    def evaluate(self) -> "OrderedDict[str, float]":
        return OrderedDict(accuracy=100.0 * self._correct / max(self._total, 1))


class TimedLoader:
    """A test loader yielding one synthetic batch ``n`` times; it notes the time (device synced) whenever the
    evaluation loop asks for the next batch, and stops early once ``budget_s`` is spent (after 2 batches)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n: int, device: torch.device,
                 budget_s: float = math.inf) -> None:
        self.batch = {"img": images, "label": labels}
        self.n, self.device, self.budget_s = n, device, budget_s
        self.marks: List[float] = []

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        self.marks = []
        for i in range(self.n):
            sync(self.device)
            self.marks.append(time.perf_counter())
            if i >= 2 and self.marks[-1] - self.marks[0] > self.budget_s:
                return
            yield self.batch
        sync(self.device)
        self.marks.append(time.perf_counter())


@contextmanager
def quiet(verbose: bool):
    with (nullcontext() if verbose else redirect_stdout(io.StringIO())):
        yield


def run_test(trainer, loader: TimedLoader, evaluator: CountingEvaluator, verbose: bool = False) -> None:
    """``trainer.test()`` (the trainer's own evaluation: its cache, autocast and inference) over ``loader``."""
    trainer.test_loader, trainer.val_loader, trainer.evaluator = loader, None, evaluator
    with quiet(verbose):
        trainer.test()


def probe_logits(trainer, images: torch.Tensor, labels: torch.Tensor, verbose: bool = False) -> torch.Tensor:
    """The logits ``trainer.test()`` produces for ``images`` (fp32, CPU)."""
    evaluator = CountingEvaluator(keep=True)
    run_test(trainer, TimedLoader(images, labels, 1, trainer.device), evaluator, verbose)
    return torch.cat(evaluator.outputs)


def measure_train(trainer, images: torch.Tensor, labels: torch.Tensor, warmup: int, steps: int,
                  budget_s: float, seed: int) -> Dict[str, Any]:
    """``trainer.forward_backward`` on one synthetic batch: warm-up steps, then timed steps (device synced after
    each) until ``steps`` are done or ``budget_s`` is spent (warm-up: at least one step, then up to half the budget).
    Peak memory covers the warm-up too (a real run's first step is part of it)."""
    device = trainer.device
    batch = {"img": images, "label": labels}
    trainer.set_model_mode("train")
    torch.manual_seed(seed)
    reset_peak_memory(device)
    first = None
    start = time.perf_counter()
    done_warmup = 0
    while done_warmup < warmup and (done_warmup == 0 or time.perf_counter() - start < budget_s / 2):
        summary = trainer.forward_backward(batch)
        first = summary if first is None else first
        done_warmup += 1
    sync(device)
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < max(steps, 1):
        t0 = time.perf_counter()
        summary = trainer.forward_backward(batch)
        sync(device)
        times.append(time.perf_counter() - t0)
        first = summary if first is None else first
        if time.perf_counter() - start > budget_s:
            break
    mean = sum(times) / len(times)
    return {"step_ms": 1e3 * mean, "step_ms_median": 1e3 * sorted(times)[len(times) // 2],
            "images_per_s": images.shape[0] / mean, "peak_mem_gib": peak_memory_gib(device),
            "steps": len(times), "warmup": done_warmup, "first_loss": float(first["loss"]),
            "first_losses": {k: float(v) for k, v in first.items() if k.startswith("loss_")}}


def measure_eval(trainer, images: torch.Tensor, labels: torch.Tensor, batches: int, budget_s: float,
                 verbose: bool = False) -> Dict[str, Any]:
    """``trainer.test()`` over ``batches`` synthetic test batches after a one-batch warm-up. ``setup_ms`` is the time
    before the first batch (class features encoded once, with the cache); images/s is the steady state after it."""
    device = trainer.device
    run_test(trainer, TimedLoader(images, labels, 1, device), CountingEvaluator(), verbose)
    reset_peak_memory(device)
    loader = TimedLoader(images, labels, batches, device, budget_s)
    start = time.perf_counter()
    run_test(trainer, loader, CountingEvaluator(), verbose)
    marks = loader.marks
    done = len(marks) - 1
    elapsed = marks[-1] - marks[0]
    return {"images_per_s": done * images.shape[0] / elapsed, "batch_ms": 1e3 * elapsed / done,
            "setup_ms": 1e3 * (marks[0] - start), "peak_mem_gib": peak_memory_gib(device),
            "batches": done, "batch": int(images.shape[0])}


def guarded(fn: Callable, *args, **kwargs) -> Tuple[Optional[Any], Optional[str]]:
    """``fn(*args)`` -> (result, None), or (None, "out of memory ...") / (None, "<Error>: ...") without raising."""
    error = None
    try:
        return fn(*args, **kwargs), None
    except OOM_ERRORS as exc:  # noqa: B014 - the tuple may hold one class
        error = "out of memory: " + (str(exc).strip().splitlines() or [""])[0][:200]
    except Exception as exc:  # recorded per case, the run goes on
        error = f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0][:300]
    return None, error


def compare_logits(fast: torch.Tensor, reference: torch.Tensor, scale: float, tolerance: float) -> Dict[str, Any]:
    """Agreement of two logit matrices: max |delta| in logits and in cosine units (divided by the logit scale)."""
    finite = bool(torch.isfinite(fast).all() and torch.isfinite(reference).all())
    diff = (fast - reference).abs().max().item() if fast.numel() else 0.0
    cos = diff / scale if scale > 0 else diff
    return {"max_abs_logit_diff": diff, "max_cos_diff": cos, "tolerance_cos": tolerance,
            "argmax_agree": float((fast.argmax(1) == reference.argmax(1)).float().mean().item()),
            "finite": finite, "agree": finite and cos <= tolerance}


def logit_scale_of(model: nn.Module) -> float:
    scale = getattr(model, "logit_scale", None)
    if isinstance(scale, torch.Tensor):
        return float(scale.detach().float().exp().item())
    return 1.0
