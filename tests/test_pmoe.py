"""pMoE-style: expert preprocessing, zero-length prompts, gradient flow, dispatcher distributions (top-k: exactly k),
hand-computed gate mixing, checkpoints (round trip, mismatch, expert weights files), VTAB-1k reader and script,
routing records per class, and the two-expert base2new run on the demo world ending in a Base / New / H table."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dasslite.analysis.expert_usage import ExpertUsage
from dasslite.vision.dispatch import PromptDispatcher
from dasslite.vision.experts import (ClipVisualExpert, ExpertCheckpointError, build_experts, create_timm_expert,
                                     parse_timm_kwargs)
from dasslite.vision.preprocess import ExpertInput
from dasslite.vision.vpt import ExpertPromptTokens, build_dispatchers, prompted_features
from tests.dataset_fixtures import make_vtab_tree, write_text
from tests.demo_fixtures import build_or_get_session_demo_world, session_demo_cache
from tests.trainer_harness import make_trainer as harness_make_trainer
from tests.trainer_harness import one_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMM = "vit_tiny_patch16_224"
TINY_TIMM = dict(img_size=16, patch_size=8, depth=2, embed_dim=64, num_heads=2)
TIMM_OPTS = [f"{TIMM} " + " ".join(f"{k}={v}" for k, v in TINY_TIMM.items())]
FAST = ["DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2", "TRAINER.PMOE.PROMPT_LAYERS", "[0, 1]",
        "TRAINER.PMOE.TIMM_KWARGS", str(TIMM_OPTS)]


def tiny_timm(seed=0, **overrides):
    torch.manual_seed(seed)
    return create_timm_expert(TIMM, kwargs={**TINY_TIMM, **overrides}, allow_random=True).eval()


def make_trainer(root, clip_path, out, extra=()):
    return harness_make_trainer(root, clip_path, out, trainer="PMoE", config="demo", extra=list(FAST) + list(extra))


def two_experts(clip_model, n_prompts, layers, kind="gate", **options):
    experts = build_experts(clip_model, ["clip", TIMM], timm_kwargs={TIMM: TINY_TIMM}, allow_random=True)
    widths = [e.width for e in experts]
    prompts = ExpertPromptTokens(widths, [e.patch_size for e in experts], layers, n_prompts) if n_prompts else None
    dispatchers = build_dispatchers(kind, widths, layers, **options) if n_prompts else None
    inputs = [ExpertInput((0.5,) * 3, (0.25,) * 3, e.mean, e.std, e.input_size) for e in experts]
    return experts, prompts, dispatchers, inputs


# -- preprocessing ------------------------------------------------------------------------------------------------
def test_expert_input_converts_statistics_and_size_and_passes_matching_input_through():
    x = torch.randn(2, 3, 32, 32)
    same = ExpertInput((0.1, 0.2, 0.3), (0.5, 0.6, 0.7), (0.1, 0.2, 0.3), (0.5, 0.6, 0.7), (32, 32))
    assert same(x) is x
    conv = ExpertInput((0.1, 0.2, 0.3), (0.5, 0.6, 0.7), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (16, 16))
    raw = x * torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1) + torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    expected = (F.interpolate(raw, size=(16, 16), mode="bicubic", align_corners=False, antialias=True) - 0.5) / 0.25
    assert torch.allclose(conv(x), expected, atol=1e-5)


# -- zero-length prompts, gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("timm_overrides", [{}, {"global_pool": "avg", "reg_tokens": 2}])
def test_zero_length_prompts_leave_every_expert_unchanged(clip_model, timm_overrides):
    experts = [ClipVisualExpert(clip_model.visual), tiny_timm(**timm_overrides)]
    pixels = [torch.randn(3, 3, 32, 32), torch.randn(3, 3, 16, 16)]
    with torch.no_grad():
        native = [e(x) for e, x in zip(experts, pixels)]
        assert torch.allclose(native[0], clip_model.visual(pixels[0]))
        assert torch.allclose(native[1], experts[1].model.forward_head(experts[1].model.forward_features(pixels[1]),
                                                                        pre_logits=True))
        widths = [e.width for e in experts]
        for prompts in (None, ExpertPromptTokens(widths, [8, 8], [], 4)):  # N_p = 0, or no prompt layer
            feats = prompted_features(experts, pixels, prompts, None)
            assert torch.allclose(experts[0].project(feats[0]), native[0], atol=1e-6, rtol=1e-5)
            assert torch.allclose(feats[1], native[1], atol=1e-6, rtol=1e-5)
        # with prompts the features move, and the CLIP expert's projected feature is still CLIP's own map
        prompts = ExpertPromptTokens(widths, [8, 8], [0, 1], 4)
        feats = prompted_features(experts, pixels, prompts, build_dispatchers("gate", widths, [0, 1]))
        assert not torch.allclose(experts[0].project(feats[0]), native[0], atol=1e-3)
        assert not torch.allclose(feats[1], native[1], atol=1e-3)


@pytest.mark.parametrize("kind", ["gate", "attention", "topk"])
def test_gradients_reach_only_prompts_dispatchers_and_heads(eurosat_root, tiny_clip_checkpoint, tmp_path, kind):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, ["TRAINER.PMOE.DISPATCHER", kind,
                                                                       "TRAINER.PMOE.PROMPT_LAYERS", "[1]"])
    model = tr.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    seen = {}
    for k, expert in enumerate(model.experts):
        blocks = expert.visual.transformer.resblocks if k == 0 else expert.model.blocks
        for i in (0, 1):
            blocks[i].register_forward_hook(lambda m, a, out, key=(k, i): seen.__setitem__(key, out.requires_grad))
    batch = next(iter(tr.train_loader_x))
    model.zero_grad(set_to_none=True)
    model.forward_train(batch["img"], batch["label"])["loss_ce"].backward()
    # blocks before the first prompt layer run under no_grad; from there on the prompt path is differentiated
    assert seen == {(0, 0): False, (1, 0): False, (0, 1): True, (1, 1): True}
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    learner = model.prompt_learner
    assert all(p.grad.abs().sum() > 0 for per_expert in learner.prompts.tokens for p in per_expert)
    assert learner.joint_proj.weight.grad.abs().sum() > 0
    assert learner.text_context.ctx.grad.abs().sum() > 0
    stats = one_step(tr, batch)[0]  # the full trainer step runs too
    assert stats["loss"] > 0


@pytest.mark.parametrize("kind", ["gate", "attention", "topk"])
def test_low_precision_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, kind):
    """bf16 autocast (what amp does on CUDA, in bf16): mixed dtypes meet in the dispatchers and the token slots."""
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, ["TRAINER.PMOE.PREC", "bf16",
                                                                       "TRAINER.PMOE.DISPATCHER", kind])
    stats = one_step(tr)[0]
    assert stats["loss"] > 0 and torch.isfinite(torch.tensor(stats["loss"]))


# -- dispatchers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,top_k", [("gate", 1), ("attention", 1), ("topk", 1), ("topk", 2), ("topk", 3),
                                        ("none", 1)])
def test_dispatcher_weights_are_distributions(kind, top_k):
    torch.manual_seed(0)
    widths = [64, 32, 64]
    first = PromptDispatcher(kind, widths, target=0, has_prev=False, top_k=top_k)
    later = PromptDispatcher(kind, widths, target=0, has_prev=True, top_k=top_k)
    new = [torch.randn(4, w) for w in widths]
    prev, patch = torch.randn(5, 4, 64), torch.randn(5, 64)
    for dispatcher, has_prev in ((first, False), (later, True)):
        prompts, weights = dispatcher(new, prev if has_prev else None, patch)
        assert prompts.shape == (5, 4, 64) and weights.shape == (5, 5)
        assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(5))
        if not has_prev:
            assert (weights[:, 3] == 0).all()  # no previous prompts at the first prompt layer
        if kind == "topk":
            assert ((weights > 0).sum(-1) == top_k).all()
        elif kind == "none":  # plain VPT-deep: the expert's own new EPTs
            assert torch.equal(prompts, new[0].expand(5, -1, -1)) and (weights[:, 0] == 1).all()
        elif kind == "gate":
            assert ((weights > 0).sum(-1) == (5 if has_prev else 4)).all()


def test_gate_mixes_the_sources_as_computed_by_hand():
    widths = [8, 8]
    gate = PromptDispatcher("gate", widths, target=1, has_prev=True)
    with torch.no_grad():  # zero router: uniform weights 1/4 over [EPT 0, EPT 1, previous prompts, patch]
        gate.router.net.weight.zero_()
        gate.router.net.bias.zero_()
    new = [torch.randn(3, 8), torch.randn(3, 8)]
    prev, patch = torch.randn(2, 3, 8), torch.randn(2, 8)
    prompts, weights = gate(new, prev, patch)
    expected = (new[0] + new[1] + prev + patch[:, None, :]) / 4
    assert torch.allclose(prompts, expected, atol=1e-6)
    assert torch.allclose(weights, torch.full((2, 4), 0.25))
    top1 = PromptDispatcher("topk", widths, target=1, has_prev=True, top_k=1)
    with torch.no_grad():
        top1.router.net.weight.zero_()
        top1.router.net.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # always the previous prompts
    prompts, weights = top1(new, prev, patch)
    assert torch.allclose(prompts, prev) and torch.equal(weights[:, 2], torch.ones(2))


def test_bad_top_k_names_the_sources():
    with pytest.raises(ValueError, match="TOPK 4 must be between 1 and the 3 sources"):
        PromptDispatcher("topk", [8, 8], target=0, has_prev=False, top_k=4)


# -- expert weights and config errors -----------------------------------------------------------------------------
def test_expert_checkpoint_errors_name_the_file_and_the_expert(tmp_path):
    good = tiny_timm(seed=3)
    path = tmp_path / "tiny_vit.pth"
    torch.save({"model": good.model.state_dict()}, path)
    loaded = create_timm_expert(TIMM, str(path), TINY_TIMM)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), good(x))
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=f"expert '{TIMM}'.*nope.pth"):
        create_timm_expert(TIMM, str(missing), TINY_TIMM)
    with pytest.raises(ExpertCheckpointError, match=f"expert '{TIMM}'.*tiny_vit.pth"):
        create_timm_expert(TIMM, str(path), {**TINY_TIMM, "embed_dim": 128})
    with pytest.raises(ValueError, match="has no weights"):
        create_timm_expert(TIMM, "", TINY_TIMM)
    with pytest.raises(ValueError, match="not in TRAINER.PMOE.EXPERTS"):
        parse_timm_kwargs(["vit_small_patch16_224 depth=2"], ["clip", TIMM])
    assert parse_timm_kwargs([f"{TIMM} depth=2 global_pool=avg"], [TIMM]) == {TIMM: {"depth": 2, "global_pool": "avg"}}


@pytest.mark.parametrize("key,value,message", [
    ("TRAINER.PMOE.DISPATCHER", "moe", "DISPATCHER"),
    ("TRAINER.PMOE.PROMPT_LAYERS", "[0, 5]", "layer 5, but expert 'clip' has only 2 blocks"),
    ("TRAINER.PMOE.CHECKPOINTS", "['', '', '']", "3 entries for 2 experts"),
    ("TRAINER.PMOE.FUSION", "mean", None),  # equal widths: allowed
])
def test_bad_config_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path, key, value, message):
    if message is None:
        assert make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, [key, value]).model is not None
        return
    with pytest.raises(ValueError, match=message):
        make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, [key, value])


# -- checkpoints, routing records ---------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_mismatched_setup(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "a")
    batch = next(iter(tr.train_loader_x))
    one_step(tr, batch)
    out = str(tmp_path / "ckpt")
    tr.save_model(1, out)
    tr.set_model_mode("eval")
    with torch.no_grad():
        expected = tr.model(batch["img"])
    fresh = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "b")
    fresh.load_model(out)
    fresh.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(fresh.model(batch["img"]), expected, atol=1e-6)
        assert not torch.allclose(make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "c").model(
            batch["img"]), expected, atol=1e-4)  # a fresh model differs: the check can fail
    other = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "d", ["TRAINER.PMOE.N_PROMPTS", "2"])
    with pytest.raises(ValueError, match="n_prompts"):
        other.load_model(out)


def test_expert_usage_per_class_is_written_after_test(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, ["TRAINER.PMOE.DISPATCHER", "topk"])
    tr.test()
    with open(tmp_path / "expert_usage.json") as f:
        record = json.load(f)
    usage = ExpertUsage.from_dict(record)
    assert usage.expert_names == ["EPT[clip]", f"EPT[{TIMM}]", "previous prompts", "patch tokens"]
    mean = usage.mean_weight()
    assert mean.shape == (10, 4) and usage.total_images == len(tr.dm.dataset.test)
    seen = usage.images > 0
    assert torch.allclose(torch.tensor(mean[seen].sum(-1)), torch.ones(int(seen.sum()), dtype=torch.float64))
    assert set(record["extra"]["per_dispatcher_mean_weight"]) == {"layer0/clip", f"layer0/{TIMM}", "layer1/clip",
                                                                   f"layer1/{TIMM}"}


# -- VTAB-1k ------------------------------------------------------------------------------------------------------
def _vtab_cfg(root, **opts):
    import train

    argv = ["--root", str(root), "--dataset-config-file", "configs/datasets/vtab.yaml", "--trainer", "PMoE",
            "DATASET.VTAB_TASK", opts.pop("task", "dtd")]
    for k, v in opts.items():
        argv += [k, v]
    return train.setup_cfg(train.build_parser().parse_args(argv))


def test_vtab_reader_and_its_errors(tmp_path):
    from datasets.vtab import VTAB1k, VtabListError

    task_dir = make_vtab_tree(str(tmp_path), "dtd", n_train=8, n_test=4)
    data = VTAB1k(_vtab_cfg(tmp_path))
    assert len(data.train_x) == 10 and len(data.test) == 4 and data.num_classes == 47
    assert data.train_x[0].impath == os.path.join(task_dir, "images/train800/0000.jpg")
    tune = VTAB1k(_vtab_cfg(tmp_path, **{"DATASET.VTAB_PROTOCOL": "tune"}))
    assert len(tune.train_x) == 8 and len(tune.test) == 2
    with pytest.raises(FileNotFoundError, match="VTAB-1k task folder 'kitti'"):
        VTAB1k(_vtab_cfg(tmp_path, task="kitti"))
    with pytest.raises(ValueError, match="not a VTAB-1k task"):
        VTAB1k(_vtab_cfg(tmp_path, task="imagenet"))
    os.remove(os.path.join(task_dir, "test.txt"))
    with pytest.raises(FileNotFoundError, match="VTAB-1k list 'test.txt'"):
        VTAB1k(_vtab_cfg(tmp_path))
    write_text(os.path.join(task_dir, "test.txt"), ["images/test/0000.jpg 1", "images/test/0001.jpg"])
    with pytest.raises(VtabListError, match="test.txt, line 2: expected 'relative/path label'"):
        VTAB1k(_vtab_cfg(tmp_path))
    write_text(os.path.join(task_dir, "test.txt"), ["images/test/0000.jpg 47"])
    with pytest.raises(VtabListError, match="line 1: label 47 is outside 0..46"):
        VTAB1k(_vtab_cfg(tmp_path))
    write_text(os.path.join(task_dir, "test.txt"), ["images/test/missing.jpg 3"])
    with pytest.raises(FileNotFoundError, match="line 1: image 'images/test/missing.jpg' not found"):
        VTAB1k(_vtab_cfg(tmp_path))


def test_vtab_script_trains_the_linear_head_and_prints_the_table(tmp_path, tiny_clip_checkpoint):
    make_vtab_tree(str(tmp_path / "data"), "eurosat", n_train=8, n_test=6, num_classes=10)
    env = dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"))
    opts = ["MODEL.BACKBONE.NAME", tiny_clip_checkpoint, "INPUT.SIZE", "(32, 32)", "TRAINER.PMOE.PREC", "fp32",
            "TRAINER.PMOE.EXPERTS", f"['clip', '{TIMM}']", "TRAINER.PMOE.CHECKPOINTS", "['', '']",
            "TRAINER.PMOE.TIMM_KWARGS", str(TIMM_OPTS), "TRAINER.PMOE.TIMM_RANDOM_INIT", "True",
            "TRAINER.PMOE.N_PROMPTS", "2", "TRAINER.PMOE.PROMPT_LAYERS", "[0, 1]", "OPTIM.MAX_EPOCH", "1",
            "OPTIM.WARMUP_EPOCH", "0", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"]
    cmd = ["bash", os.path.join(REPO, "scripts", "pmoe", "vtab.sh"), "eurosat", "1", "--", *opts]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "out" / "vtab" / "eurosat" / "PMoE" / "vtab_vit_b16_ep100" / "seed1"
    with open(run / "results.json") as f:
        accuracy = json.load(f)["accuracy"]
    assert "| eurosat" in proc.stdout and f"{accuracy:.2f}" in proc.stdout
    assert "Specialized (1/4 tasks)" in proc.stdout
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skipping" in again.stdout


# -- the demo world, end to end ------------------------------------------------------------------------------------
def test_two_expert_demo_base2new_ends_in_a_base_new_h_table(tmp_path_factory):
    build_or_get_session_demo_world(tmp_path_factory)
    out = tmp_path_factory.mktemp("pmoe_output")
    env = dict(os.environ, PYTHON=sys.executable, DASSLITE_DEMO_DIR=str(session_demo_cache(tmp_path_factory)),
               OUTPUT=str(out))
    env.pop("DATA", None)
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "pmoe", "base2new.sh"), "demo", "4", "1", "--",
                           "OPTIM.MAX_EPOCH", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout[proc.stdout.index("Base-to-new"):]
    accs = {}
    for phase in ("train_base", "test_new"):
        run = out / "base2new" / phase / "demo" / "shots_4" / "PMoE" / "demo" / "seed1"
        with open(run / "results.json") as f:
            accs[phase] = json.load(f)["accuracy"]
        assert (run / "expert_usage.json").is_file()
    base, new = accs["train_base"], accs["test_new"]
    assert f"{2 * base * new / (base + new):.2f}" in table and "| demo" in table
    # zero-shot CLIP on the demo world: 59.3 / 70.7; the CLIP expert's residual head starts from CLIP and learns
    assert base > 65 and new > 65


@pytest.mark.parametrize("recipe", ["demo", "vit_b16_ep10_ctxv1", "vtab_vit_b16_ep100"])
def test_recipes_merge_into_the_config(recipe):
    import train

    argv = ["--trainer", "PMoE", "--config-file", f"configs/trainers/PMoE/{recipe}.yaml"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    c = cfg.TRAINER.PMOE
    assert len(c.EXPERTS) == 2 and c.HEAD == ("linear" if recipe.startswith("vtab") else "clip")
    assert max(c.PROMPT_LAYERS) < (3 if recipe == "demo" else 12)


def test_bench_pmoe_smoke_reports_ratios_against_the_single_experts(tmp_path):
    from benchmarks import bench_pmoe

    out = tmp_path / "pmoe.json"
    with torch.random.fork_rng(devices=[]):
        assert bench_pmoe.main(["--arch", "tiny", "--device", "cpu", "--repeats", "1", "--out", str(out)]) == 0
    with open(out) as f:
        rows = {r["case"]: r for r in json.load(f)["results"]}
    assert set(rows) == {"single:clip", "single:vit_base_patch16_224.dino", "single:vit_base_patch16_224.mae",
                         "pmoe:2:gate", "pmoe:3:gate"}
    three = rows["pmoe:3:gate"]
    singles = sum(rows[f"single:{n}"]["train_ms"] for n in three["experts"])
    assert three["train_ratio_vs_sum_of_singles"] == pytest.approx(three["train_ms"] / singles)
    assert all(r["train_ms"] > 0 and r["eval_ms"] > 0 for r in rows.values())
