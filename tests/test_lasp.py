"""LASP and the shared pieces MoCoOp reuses: text-to-text loss, hard-template features, correction vector,
ViT LayerNorm tuning, virtual classes; the trainer end to end on a tiny CLIP + tiny EuroSAT tree."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_templates import dataset_template_groups, lasp_templates
from dasslite.prompting.calibration import FeatureCorrection, vit_block_layernorms
from dasslite.prompting.hard_prompts import HardTemplateFeatures, encode_template_features, group_prototypes
from dasslite.prompting.losses import lasp_text_loss, text_to_text_loss
from dasslite.prompting.model import encode_class_templates
from dasslite.prompting.virtual_classes import text_supervision_classes
from dasslite.utils import close_logger
from tests.trainer_harness import make_trainer as harness_make_trainer
from tests.trainer_harness import one_step, one_step_checking_updates, run_train

CFG = "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
FAST = ["TRAINER.LASP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2"]
LN_NAMES = [f"image_encoder.transformer.resblocks.{b}.ln_{i}.{w}" for b in (0, 1) for i in (1, 2)
            for w in ("weight", "bias")]


def make_trainer(root, clip_path, out, extra=(), trainer="LASP", config=CFG):
    return harness_make_trainer(root, clip_path, out, trainer=trainer, config=config, extra=extra)


# -- losses ---------------------------------------------------------------------------------------------------
def test_lasp_text_loss_hand_computed():
    learned = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # W: 2 classes
    hard = torch.tensor([[[1.0, 0.0], [0.6, 0.8]],  # template 0: H_{0,0}, H_{0,1}
                         [[0.8, 0.6], [0.0, 1.0]]])  # template 1
    s = 2.0
    # each hard feature H_{t,j} is a sample; the learned features are the classifier; target j
    terms = [-math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0))),
             -math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6))),
             -math.log(math.exp(1.6) / (math.exp(1.6) + math.exp(1.2))),
             -math.log(math.exp(2.0) / (math.exp(0.0) + math.exp(2.0)))]
    expected = sum(terms) / 4
    assert lasp_text_loss(learned, hard, s, noise_prob=0.0).item() == pytest.approx(expected, rel=1e-6)
    # the general form: queries pick their own key; broadcast over the template dim
    assert text_to_text_loss(hard, learned, s).item() == pytest.approx(expected, rel=1e-6)
    # MoCoOp's direction on template 0: each learned feature W_c picks its own prototype among H_{0,.}
    mocoop = (-math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.2)))  # W_0: logits [2.0, 1.2]
              - math.log(math.exp(1.6) / (math.exp(0.0) + math.exp(1.6)))) / 2  # W_1: logits [0.0, 1.6]
    assert text_to_text_loss(learned[None], hard[:1], s).item() == pytest.approx(mocoop, rel=1e-6)
    assert text_to_text_loss(hard[:1], learned[None], s).item() == pytest.approx((terms[0] + terms[1]) / 2, rel=1e-6)


def test_text_loss_noise_is_a_coin_per_step():
    learned = F.normalize(torch.randn(3, 4), dim=-1)
    hard = F.normalize(torch.randn(5, 3, 4), dim=-1)
    clean = lasp_text_loss(learned, hard, 10.0, noise_prob=0.0)
    assert lasp_text_loss(learned, hard, 10.0, noise_prob=1.0, noise_std=0.0) == clean
    torch.manual_seed(0)
    noisy = lasp_text_loss(learned, hard, 10.0, noise_prob=1.0, noise_std=0.05)
    torch.manual_seed(0)
    assert noisy != clean and lasp_text_loss(learned, hard, 10.0, noise_prob=1.0, noise_std=0.05) == noisy
    with pytest.raises(ValueError, match=r"must be \[T, C, E\]"):
        lasp_text_loss(learned, hard[:, :2], 1.0)


# -- hard templates, correction, LayerNorms -----------------------------------------------------------------
def test_template_features_and_group_prototypes(clip_model):
    from dasslite.clip import TextEncoder, tokenize

    encoder = TextEncoder(clip_model)
    names, templates = ["Forest", "Sea or Lake"], ["a photo of a {}.", "{} texture.", "a good photo of the {}."]
    feats = encode_template_features(encoder, names, templates)
    assert feats.shape == (3, 2, clip_model.text_projection.shape[1])
    with torch.no_grad():
        ref = F.normalize(clip_model.encode_text(tokenize(["{} texture.".format(n) for n in names])).float(), dim=-1)
    assert torch.allclose(feats[1], ref, atol=1e-5)
    protos = group_prototypes(feats, [1, 2])
    assert torch.allclose(protos[1], encode_class_templates(encoder, names, templates[1:]), atol=1e-6)
    assert torch.allclose(protos[0], feats[0])
    with pytest.raises(ValueError, match="do not partition 3"):
        group_prototypes(feats, [2, 2])

    lazy = HardTemplateFeatures(names, templates)
    assert lazy.features is None and "features" not in lazy.state_dict()
    first = lazy(encoder)
    assert torch.equal(first, feats) and lazy(encoder) is first  # encoded once


def test_correction_and_layernorm_helpers(clip_model):
    corr = FeatureCorrection(4)
    x = torch.randn(3, 4)
    assert torch.equal(corr(x), x)  # zero-initialised
    lns = vit_block_layernorms(clip_model.visual)
    assert len(lns) == 2 * len(clip_model.visual.transformer.resblocks)
    assert lns[0] is clip_model.visual.transformer.resblocks[0].ln_1  # shared, not copied
    from dasslite.clip import build_tiny_clip

    rn = build_tiny_clip(vision="rn", vision_layers=(1, 1, 1, 1), vision_width=8, image_resolution=32)
    with pytest.raises(TypeError, match="needs a ViT image encoder.*ModifiedResNet"):
        vit_block_layernorms(rn.visual)


def test_virtual_class_order_is_base_first():
    class Cfg:
        class DATASET:
            SUBSAMPLE_CLASSES = "base"

    all_names = ["a", "b", "c", "d", "e"]
    assert text_supervision_classes(Cfg, ["a", "b", "c"], True, all_names) == (all_names, [0, 1, 2])
    assert text_supervision_classes(Cfg, ["a", "b", "c"], False, all_names) == (["a", "b", "c"], None)
    with pytest.raises(RuntimeError, match="not the first 2"):
        text_supervision_classes(Cfg, ["b", "a"], True, all_names)
    Cfg.DATASET.SUBSAMPLE_CLASSES = "new"
    assert text_supervision_classes(Cfg, ["d", "e"], True, all_names) == (["d", "e"], None)


# -- trainer --------------------------------------------------------------------------------------------------
def test_base_training_uses_all_class_names_for_text_and_base_for_images(eurosat_root, tiny_clip_checkpoint,
                                                                         tmp_path):
    base = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "b",
                        FAST + ["DATASET.SUBSAMPLE_CLASSES", "base"])
    full = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "a", FAST + ["DATASET.SUBSAMPLE_CLASSES", "all"])
    all_names = list(full.dm.dataset.classnames)
    base_names = list(base.dm.dataset.classnames)
    assert len(all_names) == 10 and len(base_names) == 5
    model = base.model
    assert model.prompt_learner.classnames == all_names and all_names[:5] == base_names  # base first, label order
    assert model.class_index.tolist() == [0, 1, 2, 3, 4]
    assert model.hard_features.classnames == all_names and model.hard_features.templates == lasp_templates()
    out = model.forward_train(next(iter(base.train_loader_x))["img"], torch.zeros(8, dtype=torch.long))
    assert set(out) == {"logits", "loss_ce", "loss_text"} and out["logits"].shape == (8, 5)
    assert model.hard_features.features.shape[:2] == (35, 10)
    assert full.model.class_index is None and full.model.prompt_learner.classnames == all_names

    off = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "o",
                       FAST + ["DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.LASP.VIRTUAL_CLASSES", "False",
                               "TRAINER.LASP.TEMPLATES", "dataset"])
    assert off.model.prompt_learner.classnames == base_names and off.model.class_index is None
    assert off.model.hard_features.templates == list(dataset_template_groups("EuroSAT").templates)


@pytest.mark.parametrize("ln", [False, True])
def test_gradients_only_where_intended(eurosat_root, tiny_clip_checkpoint, tmp_path, ln):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path,
                      FAST + ["TRAINER.LASP.FINETUNE_VIT_LN", str(ln), "OPTIM.LR", "0.5",
                              "OPTIM.WARMUP_CONS_LR", "0.01"])
    trainable = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    expected = ["prompt_learner.ctx", "prompt_learner.correction.vector"]
    assert sorted(trainable) == sorted(expected + (LN_NAMES if ln else []))
    groups = tr.optim.param_groups
    assert len(groups) == (2 if ln else 1)
    assert {id(p) for p in groups[0]["params"]} == {id(tr.model.prompt_learner.ctx),
                                                    id(tr.model.prompt_learner.correction.vector)}
    summary, _ = one_step_checking_updates(tr)
    assert {"loss", "loss_ce", "loss_text", "acc"} <= set(summary)
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + summary["loss_text"], rel=1e-5)

    # the text loss alone reaches the context and the correction vector, never the image side
    tr.model.zero_grad(set_to_none=True)
    tr.model.text_loss(tr.model.encode_prompts()).backward()
    assert tr.model.prompt_learner.ctx.grad.abs().sum() > 0
    assert tr.model.prompt_learner.correction.vector.grad.abs().sum() > 0
    if ln:
        assert all(p.grad is None for p in tr.model.prompt_learner.visual_ln.parameters())
    if ln:  # after an optimizer step (torch warns about scheduler steps before one)
        assert groups[1]["initial_lr"] == pytest.approx(0.05) and groups[0]["initial_lr"] == pytest.approx(0.5)
        assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.01])  # warm-up: every group at WARMUP_CONS_LR
        for _ in range(3):  # the recipe's 3 warm-up epochs
            tr.sched.step()
        assert [g["lr"] for g in groups] == pytest.approx([0.5, 0.05])  # then each group at its own LR


def test_text_loss_scale_and_weight(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["TRAINER.LASP.NOISE_PROB", "0.0",
                                                                          "TRAINER.LASP.LAMBDA", "3.0"])
    model = tr.model
    with torch.no_grad():
        learned = model.encode_prompts()
        hard = model.hard_features(model.text_encoder)
        scale = model.logit_scale.exp().float()
        assert model.text_loss(learned).item() == pytest.approx(3.0 * text_to_text_loss(hard, learned, scale).item(),
                                                                rel=1e-5)
        model.temperature = 0.5
        assert model.text_loss(learned).item() == pytest.approx(3.0 * text_to_text_loss(hard, learned, 2.0).item(),
                                                                rel=1e-5)
        model.text_loss_weight = 0.0
        assert model.text_loss(learned).item() == 0.0


def test_all_extras_off_is_coop(eurosat_root, tiny_clip_checkpoint, tmp_path):
    common = ["DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2", "OPTIM.LR", "0.5",
              "OPTIM.WARMUP_EPOCH", "0"]
    lasp = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "l", common + [
        "TRAINER.LASP.PREC", "fp32", "TRAINER.LASP.LAMBDA", "0.0", "TRAINER.LASP.ENABLE_CORRECTION", "False",
        "TRAINER.LASP.FINETUNE_VIT_LN", "False", "TRAINER.LASP.GRAD_CLIP_NORM", "0.0"])
    coop = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "c", common + [
        "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.CTX_INIT", "a photo of a"], trainer="CoOp", config="vit_b16_ep50")
    batch = next(iter(lasp.train_loader_x))
    before = lasp.model.prompt_learner.ctx.detach().clone()
    one_step(lasp, batch)
    one_step(coop, batch)
    assert not torch.allclose(lasp.model.prompt_learner.ctx, before, atol=1e-3)
    assert torch.allclose(lasp.model.prompt_learner.ctx, coop.model.prompt_learner.ctx, atol=1e-6)


def test_cached_eval_matches_uncached_after_ln_tuning(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path,
                      FAST + ["DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.LR", "0.5", "OPTIM.WARMUP_EPOCH", "0",
                              "DATALOADER.TEST.BATCH_SIZE", "3"])
    ln_before = tr.model.prompt_learner.visual_ln[0].weight.detach().clone()
    for _ in range(2):
        one_step(tr)
    assert not torch.equal(tr.model.prompt_learner.visual_ln[0].weight, ln_before)
    tr.set_model_mode("eval")
    image = next(iter(tr.test_loader))["img"]
    with torch.no_grad():
        uncached = tr.model(image)
        with tr.model.cached_class_features():
            cached = tr.model(image)
        train_path = tr.model.forward_train(image, torch.zeros(len(image), dtype=torch.long))["logits"]
    assert uncached.shape == (len(image), 5)
    assert torch.allclose(cached, uncached, atol=1e-6) and torch.allclose(train_path, uncached, atol=1e-6)
    calls = []
    original = tr.model.compute_class_features
    tr.model.compute_class_features = lambda: calls.append(1) or original()
    tr.test()
    assert len(tr.test_loader) > 1 and len(calls) == 1 and tr.model._cached is None


def test_train_then_eval_only_on_new_classes_and_checkpoint_round_trip(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = FAST + ["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "1", "DATASET.SUBSAMPLE_CLASSES", "base"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, trainer="LASP", config=CFG, extra=extra)
    assert res["complete"] and res["subsample_classes"] == "base"
    log = open(os.path.join(out, "log.txt")).read()
    assert "Classes for the text loss: 10 (5 with images + 5 virtual)" in log and "loss_text" in log
    ckpt = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)
    keys = set(ckpt["state_dict"])
    assert {"ctx", "correction.vector", "visual_ln.0.weight", "visual_ln.3.bias"} <= keys
    assert not any(k.startswith(("hard_features", "image_encoder", "text_encoder")) for k in keys)
    assert len(ckpt["optimizer"]["param_groups"]) == 2

    # eval-only on base from the model dir reproduces the end-of-training accuracy
    again = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval_base"), trainer="LASP", config=CFG,
                      extra=extra, flags=["--eval-only", "--model-dir", out, "--load-epoch", "2"])
    assert again["accuracy"] == pytest.approx(res["accuracy"])

    # new classes: the class-name buffers are rebuilt, context, correction and LayerNorms come from the checkpoint
    new_extra = extra[:-1] + ["new"]
    new = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "new"), trainer="LASP", config=CFG,
                    extra=new_extra, flags=["--eval-only", "--model-dir", out])
    assert new["subsample_classes"] == "new" and new["total"] > 0
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "new2", new_extra)
    assert tr.model.class_index is None and len(tr.model.prompt_learner.classnames) == 5
    tr.load_model(out)
    learner = tr.model.prompt_learner
    assert torch.equal(learner.ctx, ckpt["state_dict"]["ctx"])
    assert torch.equal(learner.correction.vector, ckpt["state_dict"]["correction.vector"])
    ln_2 = tr.model.image_encoder.transformer.resblocks[1].ln_2  # visual_ln = [b0.ln_1, b0.ln_2, b1.ln_1, b1.ln_2]
    assert torch.equal(ln_2.bias, ckpt["state_dict"]["visual_ln.3.bias"])
    assert tr.model.hard_features.features is None  # evaluation never encodes the hard templates

    # a model built without LayerNorm tuning refuses the checkpoint instead of silently dropping the LayerNorms
    with pytest.raises(ValueError, match=r"unexpected keys \['visual_ln\.0\.bias'"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "noln"), trainer="LASP", config=CFG,
                  extra=new_extra + ["TRAINER.LASP.FINETUNE_VIT_LN", "False"],
                  flags=["--eval-only", "--model-dir", out])


def test_bad_lasp_config_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path):
    with pytest.raises(ValueError, match='TEMPLATES "groups" is not one of lasp, dataset'):
        make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["TRAINER.LASP.TEMPLATES", "groups"])
    close_logger()
    with pytest.raises(ValueError, match=r"TRAINER\.LASP\.NOISE_STD must be >= 0, got -1\.0"):
        make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["TRAINER.LASP.NOISE_STD", "-1.0"])
    close_logger()


@pytest.mark.parametrize("config", sorted(f[:-5] for f in os.listdir("configs/trainers/LASP") if f.endswith(".yaml")))
def test_every_recipe_merges(config):
    argv = ["--trainer", "LASP", "--dataset-config-file", "configs/datasets/eurosat.yaml",
            "--config-file", f"configs/trainers/LASP/{config}.yaml"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    assert cfg.TRAINER.LASP.CTX_INIT == "a photo of a" and cfg.TRAINER.LASP.FINETUNE_VIT_LN
    if config != "demo":
        assert cfg.TRAINER.LASP.PREC == "amp" and cfg.TRAINER.LASP.GRAD_CLIP_NORM == 1.0
        assert cfg.TRAINER.LASP.LAMBDA == (10.0 if "t2t_10" in config else 5.0)


@pytest.mark.parametrize("dataset, cfg", [("eurosat", "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32"),
                                          ("dtd", "vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32"),
                                          ("food101", "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"),
                                          ("oxford_pets", "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32")])
def test_base2new_script_picks_the_dataset_recipe(tmp_path, dataset, cfg):
    import subprocess
    import sys

    env = dict(os.environ, DATA=str(tmp_path), PYTHON=sys.executable, OUTPUT=str(tmp_path / "out"))
    proc = subprocess.run(["bash", "scripts/lasp/base2new.sh", dataset, "16", "1", "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--trainer LASP" in proc.stdout and f"configs/trainers/LASP/{cfg}.yaml" in proc.stdout
    assert "DATASET.SUBSAMPLE_CLASSES base" in proc.stdout and "DATASET.SUBSAMPLE_CLASSES new" in proc.stdout


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_low_precision_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, prec):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path,
                      FAST[2:] + ["TRAINER.LASP.PREC", prec, "OPTIM.WARMUP_EPOCH", "0"])
    learner = tr.model.prompt_learner
    assert learner.correction.vector.dtype == learner.ctx.dtype == tr.model.dtype
    before = learner.ctx.detach().clone()
    summary, _ = one_step(tr)
    assert math.isfinite(summary["loss"]) and summary["loss_text"] > 0
    assert tr.model.hard_features.features.dtype == torch.float32
    assert not torch.equal(learner.ctx.detach(), before)
