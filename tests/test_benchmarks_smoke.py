"""The benchmark harness in its CPU smoke mode: every registered trainer runs on the fast and the reference path,
with finite positive timings and agreeing logits; the per-image reference loop works for an image-conditioned
model; a wrong reference is caught; the markdown report renders."""
import json
import math

import pytest
import torch
import torch.nn as nn

from benchmarks import bench_trainers as bench
from benchmarks import harness as H
from benchmarks import report
from dasslite.prompting.model import ClipClassifier, l2_normalize
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.prompting.trainer import ClipPromptTrainer


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    with torch.random.fork_rng(devices=[]):
        rc = bench.main(["--smoke", "--out", str(out)])
    with open(out) as f:
        return rc, json.load(f)


def test_smoke_covers_every_registered_trainer(smoke_result):
    import trainers  # noqa: F401
    from dasslite.compat import TRAINER_REGISTRY

    rc, result = smoke_result
    assert rc == 0
    registered = H.prompt_trainer_names(TRAINER_REGISTRY)
    assert {"ZeroshotCLIP", "CoOp"} <= set(registered)
    by_trainer = {e["trainer"]: e for e in result["results"]}
    assert set(by_trainer) == set(registered)
    for name, entry in by_trainer.items():
        assert entry["error"] is None, (name, entry["error"])
        assert entry["outputs_agree"] is True, (name, entry["agreement"])
        for path in ("fast", "reference"):
            data = entry[path]
            assert _positive(data["eval"]["images_per_s"]) and _positive(data["eval"]["batch_ms"]), (name, path)
            if data["trainable_params"]:
                assert _positive(data["train"]["step_ms"]) and _positive(data["train"]["images_per_s"]), (name, path)
                assert math.isfinite(data["train"]["first_loss"])
            else:
                assert "train" not in data and name.startswith("ZeroshotCLIP")
        assert entry["reference"]["switched"]["text_encoders_switched"] >= 1
        assert _positive(entry["eval_vs_zeroshot"])
    assert by_trainer["CoOp"]["fast"]["trainable_params"] > 0
    meta = result["meta"]
    assert meta["smoke"] and meta["environment"]["torch"] == torch.__version__


def test_report_renders_and_fills_the_readme_section(smoke_result):
    _, result = smoke_result
    markdown = report.render([result])
    assert "| CoOp | 6 |" in markdown and "torch " + torch.__version__ in markdown
    readme = f"# x\n{report.RESULTS_START}\npending\n{report.RESULTS_END}\ntail\n"
    updated = report.replace_results_section(readme, markdown)
    assert "pending" not in updated and "| CoOp | 6 |" in updated and updated.endswith(f"{report.RESULTS_END}\ntail\n")


class _ConditionedCLIP(ClipClassifier):
    """A CoCoOp-shaped toy: a meta-net shifts the context by the image's features, so every image has its own
    prompts (B x C encoded in one batch); no class-feature cache."""

    def __init__(self, clip_model: nn.Module, classnames) -> None:
        super().__init__(clip_model)
        self.prompt_learner = ContextPromptLearner(clip_model, classnames, n_ctx=2)
        width = clip_model.ln_final.weight.shape[0]
        self.prompt_learner.meta_net = nn.Linear(clip_model.visual.output_dim, width).to(clip_model.dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        image_features = self.encode_image(image)  # [B, E]
        shift = learner.meta_net(image_features.type(learner.ctx.dtype))  # [B, D]
        prompts = learner()  # [C, L, D]
        n_img, (n_cls, length, _) = image.shape[0], prompts.shape
        on_ctx = torch.zeros(length, dtype=prompts.dtype, device=prompts.device)
        on_ctx[1:1 + learner.n_ctx] = 1
        prompts = prompts.unsqueeze(0) + shift[:, None, None, :] * on_ctx[None, None, :, None]  # [B, C, L, D]
        tokens = learner.tokenized_prompts.repeat(n_img, 1)
        text = l2_normalize(self.text_encoder(prompts.flatten(0, 1), tokens)).view(n_img, n_cls, -1)
        return self.logit_scale.exp() * torch.einsum("be,bce->bc", image_features, text)


class _ConditionedTrainer(ClipPromptTrainer):
    CFG_NODE = "COOP"  # reuses CoOp's node (precision, clipping); never registered

    def build_custom_clip(self, clip_model, classnames):
        return _ConditionedCLIP(clip_model, classnames)


class _TwiceEncodingCLIP(_ConditionedCLIP):
    """Calls its image encoder twice per forward: the reference loop must fall back to encoding per image."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.encode_image(image)
        return super().forward(image)


class _TwiceEncodingTrainer(_ConditionedTrainer):
    def build_custom_clip(self, clip_model, classnames):
        return _TwiceEncodingCLIP(clip_model, classnames)


def _smoke_args():
    return bench.resolve(bench.build_parser().parse_args(["--smoke"]))


@pytest.mark.parametrize("trainer_cls", [_ConditionedTrainer, _TwiceEncodingTrainer])
def test_instance_conditioned_reference_loops_over_images(trainer_cls):
    args = _smoke_args()
    master = H.random_clip("tiny", torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        entry = bench.run_case("Conditioned", trainer_cls, "tiny", 5, args, None, master, torch.device("cpu"))
    assert entry["error"] is None, entry["error"]
    assert entry["instance_conditioned"] is True
    ref = entry["reference"]
    assert ref["switched"]["per_image_loop"] is True
    if trainer_cls is _ConditionedTrainer:
        assert ref["notes"] == []  # batched image features, one loop step per image, in training and evaluation
    else:
        assert len(ref["notes"]) == 1 and "image encoder run per image" in ref["notes"][0]
    assert entry["outputs_agree"] is True, entry["agreement"]
    assert entry["agreement"]["first_loss_diff"] < 1e-4  # the looped loss is the batch mean, as the fast one
    assert _positive(ref["train"]["images_per_s"]) and _positive(ref["eval"]["images_per_s"])


def test_a_wrong_reference_is_reported(monkeypatch):
    from dasslite.clip.text import TextEncoder

    original = TextEncoder._encode_reference
    monkeypatch.setattr(TextEncoder, "_encode_reference", lambda self, p, eot: original(self, p, eot).flip(0))
    import trainers  # noqa: F401
    from dasslite.compat import TRAINER_REGISTRY

    args = _smoke_args()
    master = H.random_clip("tiny", torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        entry = bench.run_case("CoOp", TRAINER_REGISTRY.get("CoOp"), "tiny", 6, args, None, master,
                               torch.device("cpu"))
    assert entry["outputs_agree"] is False
    assert bench.failures({"results": [entry]}, strict=True)
