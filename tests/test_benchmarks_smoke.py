"""The benchmark harness in its CPU smoke mode: every registered trainer runs on the fast and the reference path,
with finite positive timings and agreeing logits; the per-image reference loop works for an image-conditioned
model; a wrong reference is caught; the markdown report renders; MoCoOp's reference re-encodes every expert at
full length, its cached fast logits equal the reference's, and its two target ratios pass or fail as they should."""
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


# -- MoCoOp ---------------------------------------------------------------------------------------------------------
def test_mocoop_smoke_entry(smoke_result):
    """MoCoOp in the smoke run: Caltech101's 5 experts below C = 1000, both reference switches applied, the same
    eval logits and the same CE and gating losses on both paths (the text loss differs by design: the reference
    encodes every expert, as the authors' code does), and its two target ratios in the report."""
    _, result = smoke_result
    entry = next(e for e in result["results"] if e["trainer"] == "MoCoOp")
    assert (entry["experts"], entry["template_groups"]) == (5, "Caltech101")
    assert (entry["routing"], entry["experts_per_step"]) == ("spread", 5)  # batch 4 x top-2 covers all 5
    switched = entry["reference"]["switched"]
    assert switched["full_length_learners"] == 1 and switched["every_expert_in_training"] is True
    assert entry["outputs_agree"] is True and entry["agreement"]["argmax_agree"] == 1.0
    diffs = entry["agreement"]["first_loss_term_diffs"]
    assert diffs["loss_ce"] < 1e-4 and diffs["loss_gate"] < 1e-4 and "loss_text" in diffs
    assert _positive(entry["train_step_vs_coop"]) and _positive(entry["eval_vs_zeroshot"])
    rows = [r for r in result["targets"] if r.get("group") == report.MOCOOP_GROUP]
    assert len(rows) == 3 and rows[1]["met"] is None  # batch 4: the step target is stated for batch 32
    assert rows[2].get("info") and _positive(entry["train_step_vs_lasp"])  # LASP ran too: a context row
    markdown = report.render([result])
    assert "### MoCoOp targets" in markdown and "| MoCoOp (5 experts, 5 per step) | 6 |" in markdown
    assert any(line.startswith("n/a   MoCoOp training step") for line in report.target_lines(rows))


def test_mocoop_config_in_the_benchmark():
    import trainers  # noqa: F401
    from dasslite.compat import TRAINER_REGISTRY

    cls = TRAINER_REGISTRY.get("MoCoOp")
    recipe = H.default_config_file("MoCoOp")
    for n_cls, groups in ((100, "Caltech101"), (1000, "ImageNet")):
        cfg = H.build_cfg(cls, "ViT-B/16", recipe, None, 32, 100, n_cls=n_cls)
        c = cfg.TRAINER.MOCOOP
        assert (c.TEMPLATE_GROUPS, c.EXPERT_USAGE, cfg.DATASET.SUBSAMPLE_CLASSES) == (groups, False, "all")
    cfg = H.build_cfg(cls, "ViT-B/16", recipe, None, 32, 100, ["TRAINER.MOCOOP.TEMPLATE_GROUPS", "EuroSAT"], n_cls=100)
    assert cfg.TRAINER.MOCOOP.TEMPLATE_GROUPS == "EuroSAT"  # --opts override the benchmark's choice


def test_mocoop_reference_reencodes_every_expert_at_full_length():
    """What each path feeds the text encoder: the fast path encodes each expert's C prompts once per test() (its
    shared SOS + leading context once, the rest cut to the longest prompt) and only the selected experts in
    training; the reference re-encodes all E x C at 77 tokens for every test batch and every training step. The
    eval logits of the two are the same."""
    import trainers  # noqa: F401
    from dasslite.compat import TRAINER_REGISTRY

    cpu, n_cls = torch.device("cpu"), 4
    cls = TRAINER_REGISTRY.get("MoCoOp")
    cfg = H.build_cfg(cls, "tiny", H.default_config_file("MoCoOp"), "fp32", 4, 3, n_cls=n_cls)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trainer = H.build_trainer(cls, cfg, H.random_clip("tiny", cpu), H.class_names(n_cls), cpu)
        images, labels = bench.synthetic_batch(3, n_cls, 32, cpu, seed=3)
        experts = trainer.model.prompt_learner.num_experts
        encoder = trainer.model.text_encoder
        calls, shared = [], []
        original, original_prefixed = encoder.forward, encoder.encode_prefixed
        encoder.forward = lambda p, t, **kw: (calls.append(tuple(p.shape[:2])), original(p, t, **kw))[1]
        encoder.encode_prefixed = lambda p, s, e: (shared.append((tuple(p.shape[:-1]), s.shape[-3])),
                                                   original_prefixed(p, s, e))[1]

        def logits_of_two_batches():
            calls.clear()
            shared.clear()
            evaluator = H.CountingEvaluator(keep=True)
            H.run_test(trainer, H.TimedLoader(images, labels, 2, cpu), evaluator)
            return torch.cat(evaluator.outputs), list(calls) + list(shared)

        prefixes = [1 + n for n in trainer.model.prompt_learner.n_before]
        fast, fast_calls = logits_of_two_batches()
        # every expert once, its prefix shared by C prompts; experts with equal prefix lengths in one call
        expected = {p: prefixes.count(p) for p in prefixes}
        assert fast_calls == [((count, p), n_cls) for p, count in expected.items()]
        one = {"img": images[:1], "label": labels[:1]}
        trainer.forward_backward(one)  # also encodes the hard-template group prototypes, once
        calls.clear()
        shared.clear()
        trainer.forward_backward(one)
        assert calls == [] and all(n == n_cls for _, n in shared)
        assert sum(groups for (groups, _), _ in shared) == 2  # its top-2 experts only
        fast, _ = logits_of_two_batches()  # after two steps: trained contexts, router and ViT LayerNorms

        H.use_reference_path(trainer, instance_conditioned=False)
        reference, ref_calls = logits_of_two_batches()
        assert ref_calls == [(experts * n_cls, 77)] * 2
        calls.clear()
        trainer.forward_backward(one)
        assert calls == [(experts * n_cls, 77)]
        assert H.experts_per_step(trainer, images[:1]) == experts  # the reference: every expert, even for 1 image
        assert H.spread_routing(trainer.model)
        with torch.no_grad():
            spread = trainer.model.route(trainer.model.encode_image(images))
        assert spread.indices.tolist() == [[0, 1], [2, 3], [4, 0]]  # image b: experts (2b + j) mod 5
        assert torch.allclose(spread.weights.sum(-1), torch.ones(3))
    scale = H.logit_scale_of(trainer.model)
    agreement = H.compare_logits(fast, reference, scale, H.TOLERANCE["fp32"])
    assert agreement["agree"] and agreement["argmax_agree"] == 1.0, agreement


def _mocoop_entry(batch, step_ratio, eval_ratio):
    return {"trainer": "MoCoOp", "arch": "ViT-B/16", "classes": 100, "batch": batch, "experts": 5,
            "fast": {"train": {"step_ms": 30.0 * step_ratio}, "eval": {"images_per_s": 1000.0 * eval_ratio}},
            "reference": {}, "speedup": {}, "train_step_vs_coop": step_ratio, "eval_vs_zeroshot": eval_ratio}


@pytest.mark.parametrize("batch, step_ratio, eval_ratio, expected", [
    (32, 1.4, 0.95, [True, True]), (32, 1.6, 0.85, [False, False]), (16, 1.4, 0.95, [True, None])])
def test_mocoop_targets_pass_and_fail(batch, step_ratio, eval_ratio, expected):
    rows = report.mocoop_targets(_mocoop_entry(batch, step_ratio, eval_ratio))
    assert [r["met"] for r in rows] == expected
    assert rows[0]["value"].startswith(f"{eval_ratio:.2f}x") and rows[1]["value"].startswith(f"{step_ratio:.2f}x")
    lines = report.target_lines(rows)
    assert lines[0].startswith("PASS" if expected[0] else "FAIL")


def test_mocoop_step_vs_lasp_is_context_not_a_target():
    """With a LASP step in the run, MoCoOp's step over LASP's is shown as context ("info"), never as PASS/FAIL."""
    entry = dict(_mocoop_entry(32, 2.1, 1.0), train_step_vs_lasp=1.16)
    rows = report.mocoop_targets(entry)
    assert [r["met"] for r in rows] == [True, False, None] and rows[2].get("info")
    assert rows[2]["value"] == "1.16x (63.0 vs 54.3 ms)"
    assert report.target_lines(rows)[2].startswith("info")
    assert "| info |" in report.render([{"meta": {"environment": {"gpu": "G", "torch": "t", "cuda": "c",
                                                                     "cudnn": "d", "python": "p"},
                                               "finished_at": "now", "smoke": False, "command": "x"},
                                      "results": [entry]}])
    entries = [{"trainer": t, "arch": "A", "classes": 100, "batch": 32, "fast": {"train": {"step_ms": ms}}}
               for t, ms in (("CoOp", 10.0), ("LASP", 20.0), ("MoCoOp", 25.0))]
    bench.add_step_ratios(entries)
    assert [e["train_step_vs_coop"] for e in entries] == [1.0, 2.0, 2.5]
    assert [e["train_step_vs_lasp"] for e in entries] == [0.5, 1.0, 1.25]


def test_synthetic_class_names_follow_imagenet_lengths():
    """The benchmark's class names have ImageNet's BPE length spread (which decides the padded and the bucketed
    cost), are distinct, and keep the longest name at any C."""
    from dasslite.clip.text import bpe_encode
    lengths = [len(bpe_encode(name)) for name in H.class_names(1000)]
    assert {k: lengths.count(k) for k in set(lengths)} == H.IMAGENET_NAME_TOKENS
    assert len(set(H.class_names(1000))) == 1000
    for n in (2, 100):
        names = H.class_names(n)
        assert len(set(names)) == n and max(len(bpe_encode(name)) for name in names) == 12
    assert H.class_names(100) == H.class_names(100)


def test_gpu_run_script_replaces_results_only_on_success(tmp_path):
    """benchmarks/gpu_run.sh end to end (tiny CLIP on CPU): a successful run writes <arch>.json and fills the
    README's results section; a failed run leaves both as they were and keeps its own results aside."""
    import os
    import shutil
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    readme = tmp_path / "README.md"
    shutil.copy(os.path.join(root, "benchmarks", "README.md"), readme)
    env = dict(os.environ, ARCHS="tiny", DEVICE="cpu", PYTHON=sys.executable, RESULTS_DIR=str(tmp_path / "res"),
               README=str(readme), TEXT_OPTS="--classes 6 --repeats 1",
               FSMOE_OPTS="--classes 6 --batch 4 --rounds 1 --warmup 0 --prec fp32",
               PARTS="trainers text fsmoe")  # the cache's tests run in the suite; pMoE's bench has its own smoke test

    def run(*extra, parts=None):
        return subprocess.run(["bash", "benchmarks/gpu_run.sh", "--smoke", "--trainers", "ZeroshotCLIP", "CoOp",
                               *extra], cwd=root, env=dict(env, PARTS=parts or env["PARTS"]), capture_output=True,
                              text=True, timeout=600)

    done = run()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = tmp_path / "res" / "tiny.json"
    first = result.read_text()
    assert [e["trainer"] for e in json.loads(first)["results"]] == ["ZeroshotCLIP", "CoOp"]
    filled = readme.read_text()
    assert "| CoOp | 6 |" in filled and "**Pending.**" not in filled
    text = json.loads((tmp_path / "res" / "text_tiny.json").read_text())  # the text core's own benchmark
    assert [c["classes"] for c in text["cases"]] == [6] and len(text["cases"][0]["rows"]) == 7
    ratios = json.loads((tmp_path / "res" / "fsmoe_step_ratios_tiny.json").read_text())  # FSMoE's interleaved steps
    assert set(ratios["median_step_s"]) == {"FSMoE", "FSMoE:ref", "CoCoOp"}
    assert ratios["ratios"]["FSMoE:ref / FSMoE"] > 0
    failed = run("--config", f"CoOp={tmp_path / 'no_such_recipe.yaml'}", parts="trainers")
    assert failed.returncode != 0
    assert "is left as it was" in failed.stderr
    assert result.read_text() == first and readme.read_text() == filled
    assert not (tmp_path / "res" / "tiny.partial.json").exists()


def test_results_are_written_after_every_case(tmp_path, monkeypatch):
    """A run writes its JSON after each case (``complete`` False until the end), so a killed run keeps what it
    measured, and the report says the run is incomplete."""
    out = tmp_path / "r.json"
    seen = []
    real = bench._write_json

    def spy(path, data):
        real(path, data)
        seen.append(json.loads(out.read_text()))

    monkeypatch.setattr(bench, "_write_json", spy)
    assert bench.main(["--smoke", "--trainers", "ZeroshotCLIP", "CoOp", "--out", str(out)]) == 0
    assert [len(r["results"]) for r in seen] == [1, 2, 2]
    assert [r["meta"]["complete"] for r in seen] == [False, False, True]
    assert seen[1]["results"][1]["train_step_vs_coop"] == 1.0  # derived ratios are in every partial file
    assert "**Incomplete run**: it stopped after 1 cases" in report.render([seen[0]])
    assert "Incomplete" not in report.render([seen[2]])


def test_text_core_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """benchmarks/bench_text.py on the tiny CLIP: every way is timed and agrees with the reference; a way that
    computes something else makes the run fail."""
    from benchmarks import bench_text
    from dasslite.clip import TextEncoder
    out = tmp_path / "text.json"
    argv = ["--arch", "tiny", "--device", "cpu", "--classes", "6", "--repeats", "1", "--buckets", "1", "3",
            "--out", str(out)]
    assert bench_text.main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["cases"][0]["rows"]
    assert [(r["way"], r["buckets"]) for r in rows] == [("reference", None), ("truncated", None), ("prefix", None),
                                                        ("buckets", 1), ("buckets", 3)]
    assert all(r["max_cos_diff"] <= 1e-4 and len(r["all_ms"]) == 1 and r["median_ms"] > 0 for r in rows)
    assert result["cases"][0]["longest_prompt"] == 1 + 4 + 12 + 2  # SOS, context, the 12-token name, '.', EOT
    assert "| 6 | buckets | 3 |" in capsys.readouterr().out
    real = TextEncoder.encode_prefixed
    monkeypatch.setattr(TextEncoder, "encode_prefixed", lambda self, p, s, e: real(self, p, s, e).flip(0))
    assert bench_text.main(argv) == 1
