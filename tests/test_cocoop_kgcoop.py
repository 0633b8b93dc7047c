"""CoCoOp (instance-conditioned prompts, batched and chunked text encoding) and KgCoOp (knowledge-guided loss) on a
tiny CLIP + tiny EuroSAT tree: prompt shapes, what learns, equality with a per-image loop, the loss by hand, training,
new-class evaluation, checkpoints, recipes and scripts."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import train
from clip_templates import template_for
from dasslite.prompting.conditional import ConditionalPromptCLIP, ConditionalPromptLearner
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.sweep import DEFAULT_CFGS
from dasslite.utils import close_logger
from tests.trainer_harness import make_trainer, one_step, one_step_checking_updates
from tests.trainer_harness import run_train
from trainers.kgcoop import KgCoOpCLIP, knowledge_guided_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSNAMES = ["Annual Crop Land", "Forest", "Sea or Lake"]
COCOOP_CFG = "vit_b16_c4_ep10_batch1_ctxv1"
KGCOOP_CFG = "vit_b16_ep100_ctxv1"
COCOOP_FAST = ["TRAINER.COCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"]
KGCOOP_FAST = ["TRAINER.KGCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8"]
META_NET = [f"prompt_learner.meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]


def build(root, clip_path, out, trainer, config, extra=()):
    tr = make_trainer(root, clip_path, out, trainer=trainer, config=config, extra=list(extra))
    close_logger()
    return tr


# -- CoCoOp: prompts ------------------------------------------------------------------------------------------
def test_conditional_prompts_shift_the_context_per_image(clip_model):
    torch.manual_seed(0)
    learner = ConditionalPromptLearner(clip_model, CLASSNAMES, ctx_init="a photo of a")
    width, embed = clip_model.ln_final.weight.shape[0], clip_model.visual.output_dim
    assert learner.n_ctx == 4 and learner.ctx.shape == (4, width)
    assert learner.meta_net.linear1.weight.shape == (embed // 16, embed)
    assert learner.meta_net.linear2.weight.shape == (width, embed // 16)
    feats = F.normalize(torch.randn(2, embed), dim=-1)
    prompts = learner(feats)
    assert prompts.shape == (2, 3, 77, width)
    shift = learner.meta_net(feats)
    for b in range(2):
        for c in range(3):
            assert torch.allclose(prompts[b, c, 1:5], learner.ctx + shift[b], atol=1e-6)
        assert torch.equal(prompts[b, :, :1], learner.token_prefix)
        assert torch.equal(prompts[b, :, 5:], learner.token_suffix)
    assert learner.class_dependent_keys == ("token_prefix", "token_suffix")


def test_assemble_broadcasts_leading_dims_in_every_layout(clip_model):
    learner = ContextPromptLearner(clip_model, CLASSNAMES, n_ctx=4, class_token_position="middle")
    ctx = torch.randn(2, 3, 4, clip_model.ln_final.weight.shape[0])
    batched = learner.assemble(ctx)
    assert batched.shape == (2, 3, 77, ctx.shape[-1])
    for b in range(2):
        assert torch.equal(batched[b], learner.assemble(ctx[b]))
    assert torch.equal(learner.assemble(learner.ctx.unsqueeze(0).expand(3, -1, -1)), learner())


# -- CoCoOp: model ----------------------------------------------------------------------------------------------
def test_batched_logits_equal_a_per_image_loop_and_chunking_changes_nothing(clip_model):
    torch.manual_seed(0)
    learner = ConditionalPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    model = ConditionalPromptCLIP(clip_model, learner).eval()
    assert model.instance_conditioned and not hasattr(model, "cached_class_features")
    images = torch.randn(3, 3, 32, 32)
    calls = []
    encode = model.text_encoder._encode_prefixed
    model.text_encoder._encode_prefixed = lambda p, s, e: calls.append(tuple(s.shape[:2])) or encode(p, s, e)
    with torch.no_grad():
        batched = model(images)
        # the 3 images x 3 classes in one call, not a loop over images; each image's SOS + context encoded once
        assert calls == [(3, 3)]
        # what CoCoOp's authors compute: one image at a time, its C prompts through CLIP's own 77-token path
        loop = []
        for i in range(3):
            feat = model.encode_image(images[i:i + 1])
            text = model.text_encoder(learner(feat)[0], learner.tokenized_prompts, reference=True)
            loop.append(model.logit_scale.exp() * feat @ F.normalize(text, dim=-1).t())
        loop = torch.cat(loop)
        calls.clear()
        model.text_encoder.chunk_size = 2
        chunked = model(images)
    assert batched.shape == (3, 3)
    assert torch.allclose(batched, loop, atol=1e-4)
    assert calls == [(1, 2), (1, 1)] * 3  # at most 2 prompts per call
    assert torch.allclose(chunked, batched, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size"):
        ConditionalPromptCLIP(clip_model, learner, chunk_size=0)


def test_cocoop_step_trains_the_context_and_meta_net_only(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, "CoCoOp", COCOOP_CFG,
               COCOOP_FAST + ["TRAINER.COCOOP.TEXT_CHUNK_SIZE", "7"])
    assert tr.model.text_encoder.chunk_size == 7
    trainable = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_learner.ctx"] + META_NET
    summary, batch = one_step_checking_updates(tr)
    assert set(summary) == {"loss", "acc"} and summary["loss"] > 0
    tr.set_model_mode("eval")
    with torch.no_grad():
        assert tr.model_inference(batch["img"]).shape == (batch["img"].shape[0], 10)


@pytest.mark.parametrize("prec", ["fp16", "bf16", "amp"])
@pytest.mark.parametrize("trainer,config", [("CoCoOp", COCOOP_CFG), ("KgCoOp", KGCOOP_CFG)])
def test_every_precision_trains_a_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer, config, prec):
    node = "COCOOP" if trainer == "CoCoOp" else "KGCOOP"
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer, config,
               [f"TRAINER.{node}.PREC", prec, "DATALOADER.TRAIN_X.BATCH_SIZE", "2"])
    learner = tr.model.prompt_learner
    dtype = torch.float16 if prec == "fp16" else torch.float32
    assert learner.ctx.dtype == dtype and tr.scaler is None
    if trainer == "CoCoOp":
        assert learner.meta_net.linear1.weight.dtype == dtype
    before = learner.ctx.detach().clone()
    summary, _ = one_step(tr)
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values()), summary
    assert not torch.equal(learner.ctx.detach(), before)
    for p in learner.parameters():  # (in fp16 the warm-up LR's update of the meta-net is below fp16's resolution)
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_cocoop_train_then_new_classes_and_checkpoint_round_trip(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = COCOOP_FAST + ["OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, trainer="CoCoOp", config=COCOOP_CFG, extra=extra)
    assert res["complete"] and res["subsample_classes"] == "base" and res["total"] > 0
    state = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=True)["state_dict"]
    assert set(state) == {"ctx", "token_prefix", "token_suffix"} | {k.split(".", 1)[1] for k in META_NET}
    ev = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval_base"), trainer="CoCoOp",
                   config=COCOOP_CFG, extra=extra, flags=["--eval-only", "--model-dir", out, "--load-epoch", "1"])
    assert ev["accuracy"] == pytest.approx(res["accuracy"])
    new = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "new"), trainer="CoCoOp", config=COCOOP_CFG,
                    extra=extra[:-1] + ["new"], flags=["--eval-only", "--model-dir", out])
    assert new["complete"] and new["subsample_classes"] == "new" and new["total"] > 0


# -- KgCoOp: the loss ---------------------------------------------------------------------------------------------
def test_knowledge_guided_loss_by_hand_in_both_forms():
    learned = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    hand = torch.tensor([[0.0, 1.0], [0.6, 0.8]])  # cos = 0 and 1
    assert knowledge_guided_loss(learned, hand, "cosine").item() == pytest.approx(1 - (0 + 1) / 2)
    assert knowledge_guided_loss(learned, hand, "squared_l2").item() == pytest.approx((2 + 0) / 2)  # |(1,-1)|^2 = 2
    # features are normalised first; for unit vectors ||w - h||^2 = 2 - 2 cos, so the paper's form is twice the code's
    assert knowledge_guided_loss(3 * learned, 0.5 * hand, "cosine").item() == pytest.approx(0.5)
    w, h = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    assert knowledge_guided_loss(w, h, "squared_l2").item() == pytest.approx(
        2 * knowledge_guided_loss(w, h, "cosine").item(), rel=1e-5)
    for form in ("cosine", "squared_l2"):
        assert knowledge_guided_loss(w, w.clone(), form).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="KG_LOSS"):
        knowledge_guided_loss(w, h, "l1")
    with pytest.raises(ValueError, match=r"\[C, E\]"):
        knowledge_guided_loss(w, h[:4])


def test_kg_loss_is_zero_when_the_learned_prompt_is_the_hand_crafted_one(clip_model):
    template = template_for("EuroSAT")  # "a centered satellite photo of {}."
    learner = ContextPromptLearner(clip_model, CLASSNAMES, ctx_init=template.split(" {}")[0])
    model = KgCoOpCLIP(clip_model, learner, CLASSNAMES, template, weight=8.0)
    assert model.hand_crafted.features is None  # encoded on the first training step only
    with torch.no_grad():
        out = model.forward_train(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    assert set(out) == {"logits", "loss_ce", "loss_kg"} and out["loss_kg"].item() == pytest.approx(0.0, abs=1e-5)
    assert model.hand_crafted.features.shape == (1, 3, clip_model.text_projection.shape[1])


def test_kg_loss_matches_clip_features_computed_by_hand(clip_model):
    from dasslite.clip import TextEncoder, tokenize

    template = template_for("EuroSAT")
    torch.manual_seed(0)
    learner = ContextPromptLearner(clip_model, CLASSNAMES, n_ctx=4)
    with torch.no_grad():
        hand = F.normalize(clip_model.encode_text(tokenize([template.format(n) for n in CLASSNAMES])), dim=-1)
        learned = F.normalize(TextEncoder(clip_model)(learner(), learner.tokenized_prompts, reference=True), dim=-1)
        cos = (learned * hand).sum(-1)
        for form, weight, expected in (("cosine", 8.0, 8.0 * (1 - cos.mean())),
                                       ("squared_l2", 2.0, 2.0 * (learned - hand).pow(2).sum(-1).mean())):
            model = KgCoOpCLIP(clip_model, learner, CLASSNAMES, template, weight=weight, form=form)
            loss = model.forward_train(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))["loss_kg"]
            assert loss.item() == pytest.approx(expected.item(), rel=1e-4), form
        off = KgCoOpCLIP(clip_model, learner, CLASSNAMES, template, weight=0.0)
        assert off.forward_train(torch.randn(1, 3, 32, 32), torch.tensor([1]))["loss_kg"].item() == 0.0
        assert off.hand_crafted.features is None  # W = 0 never encodes the hand-crafted prompts


# -- KgCoOp: trainer ---------------------------------------------------------------------------------------------
def test_kgcoop_step_trains_only_the_context(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, "KgCoOp", KGCOOP_CFG, KGCOOP_FAST)
    assert [n for n, p in tr.model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]
    assert tr.model.kg_weight == 8.0 and tr.model.kg_form == "cosine"
    assert tr.model.hand_crafted.templates == ["a centered satellite photo of {}."]
    frozen = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    ctx = tr.model.prompt_learner.ctx.detach().clone()
    summary, _ = one_step(tr)
    assert set(summary) == {"loss", "loss_ce", "loss_kg", "acc"}
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + summary["loss_kg"], rel=1e-5)
    assert summary["loss_kg"] > 0  # "a photo of a {}." is not the EuroSAT template
    assert not torch.equal(tr.model.prompt_learner.ctx.detach(), ctx)
    for n, p in tr.model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None and torch.equal(p.detach(), frozen[n]), n
    # evaluation caches the static class prompts (CoOp's path) and never needs the hand-crafted features
    assert hasattr(tr.model, "cached_class_features")


def test_kgcoop_config_errors(eurosat_root, tiny_clip_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="KG_LOSS"):
        build(eurosat_root, tiny_clip_checkpoint, tmp_path, "KgCoOp", KGCOOP_CFG, ["TRAINER.KGCOOP.KG_LOSS", "l1"])
    with pytest.raises(ValueError, match="TEXT_CHUNK_SIZE"):
        build(eurosat_root, tiny_clip_checkpoint, tmp_path, "CoCoOp", COCOOP_CFG,
              ["TRAINER.COCOOP.TEXT_CHUNK_SIZE", "-1"])
    close_logger()


def test_kgcoop_train_logs_loss_kg_then_new_classes(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = KGCOOP_FAST + ["OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.KGCOOP.KG_LOSS", "squared_l2"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, trainer="KgCoOp", config=KGCOOP_CFG, extra=extra)
    assert res["complete"] and res["subsample_classes"] == "base"
    lines = [line for line in open(os.path.join(out, "log.txt")) if line.startswith("epoch [")]
    assert lines and all("loss_ce " in line and "loss_kg " in line for line in lines)
    state = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    assert set(state) == {"ctx", "token_prefix", "token_suffix"}  # never the hand-crafted features or CLIP
    ev = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval_base"), trainer="KgCoOp",
                   config=KGCOOP_CFG, extra=extra, flags=["--eval-only", "--model-dir", out])
    assert ev["accuracy"] == pytest.approx(res["accuracy"])
    new = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "new"), trainer="KgCoOp", config=KGCOOP_CFG,
                    extra=extra[:-3] + ["new"] + extra[-2:], flags=["--eval-only", "--model-dir", out])
    assert new["complete"] and new["subsample_classes"] == "new" and new["total"] > 0


# -- recipes and scripts -----------------------------------------------------------------------------------------
RECIPES = {"CoCoOp": {"vit_b16_c4_ep10_batch1_ctxv1": (4, "a photo of a", 1, 10),
                      "vit_b16_c4_ep10_batch1": (4, "", 1, 10), "vit_b16_c8_ep10_batch1": (8, "", 1, 10),
                      "vit_b16_c16_ep10_batch1": (16, "", 1, 10), "demo": (4, "a photo of a", 4, 10)},
           "KgCoOp": {"vit_b16_ep100_ctxv1": (4, "a photo of a", 128, 100), "rn50_ep100": (4, "a photo of a", 128, 100),
                      "demo": (4, "a photo of a", 16, 10)}}


@pytest.mark.parametrize("trainer", sorted(RECIPES))
def test_recipes_load_with_the_lineage_values(trainer):
    node = {"CoCoOp": "COCOOP", "KgCoOp": "KGCOOP"}[trainer]
    folder = os.path.join(REPO, "configs", "trainers", trainer)
    assert sorted(f[:-5] for f in os.listdir(folder)) == sorted(RECIPES[trainer])
    assert DEFAULT_CFGS[trainer] in RECIPES[trainer]
    for name, (n_ctx, init, batch, epochs) in RECIPES[trainer].items():
        argv = ["--root", "/nonexistent", "--trainer", trainer, "--output-dir", "/nonexistent",
                "--dataset-config-file", "configs/datasets/eurosat.yaml",
                "--config-file", os.path.join(folder, f"{name}.yaml")]
        cfg = train.setup_cfg(train.build_parser().parse_args(argv))
        c = cfg.TRAINER[node]
        got = (c.N_CTX, c.CTX_INIT, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH)
        assert got == (n_ctx, init, batch, epochs), name
        assert (cfg.OPTIM.NAME, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH) == ("sgd", "cosine", 1), name
        if name != "demo":
            assert (c.PREC, cfg.OPTIM.LR, cfg.OPTIM.WARMUP_TYPE) == ("fp16", 0.002, "constant"), name
        else:
            assert (c.PREC, cfg.INPUT.SIZE, cfg.DATALOADER.NUM_WORKERS) == ("fp32", (64, 64), 0)
        if trainer == "KgCoOp":
            assert (c.W, c.KG_LOSS) == (8.0, "cosine")


@pytest.mark.parametrize("script,trainer,cfg", [("cocoop", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"),
                                                ("kgcoop", "KgCoOp", "vit_b16_ep100_ctxv1")])
def test_base2new_scripts_plan_the_lineage_recipe(tmp_path, script, trainer, cfg):
    env = {**os.environ, "PYTHON": sys.executable, "DATA": str(tmp_path), "OUTPUT": str(tmp_path / "out")}
    for key in ("CFG", "GPUS", "LOADEP"):
        env.pop(key, None)
    path = os.path.join(REPO, "scripts", script, "base2new.sh")
    proc = subprocess.run(["bash", path, "eurosat", "16", "1,2", "--dry-run"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{trainer} / {cfg} on eurosat, 16 shots, seeds 1 2" in proc.stdout
    assert f"configs/trainers/{trainer}/{cfg}.yaml" in proc.stdout and "--eval-only" in proc.stdout
    proc = subprocess.run(["bash", path, "eurosat"], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith(f"Usage: bash scripts/{script}/base2new.sh DATASET SHOTS")
    assert "Environment" not in proc.stderr
