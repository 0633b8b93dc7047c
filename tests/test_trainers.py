"""CoOp and zero-shot CLIP on a tiny CLIP + tiny EuroSAT tree, through train.py's own config path."""
import os

import pytest
import torch
import torch.nn.functional as F

from dasslite.prompting.prompt_learner import ContextPromptLearner, count_tokens
from dasslite.utils import close_logger
from tests.trainer_harness import make_trainer, run_train

CLASSNAMES = ["Annual Crop Land", "Forest", "Sea or Lake"]


# -- prompt learner ------------------------------------------------------------------------------------------
def test_ctx_init_uses_bpe_token_count_and_word_embeddings(clip_model):
    from dasslite.clip import embed_tokens, tokenize

    learner = ContextPromptLearner(clip_model, CLASSNAMES, ctx_init="a photo of a")
    assert learner.n_ctx == count_tokens("a photo of a") == 4
    words = embed_tokens(clip_model, tokenize(["a photo of a"]))[0, 1:5]
    assert torch.equal(learner.ctx.data, words)
    # A word that BPE splits counts as several tokens (CoOp would count words and misalign the class tokens).
    assert count_tokens("a centeredsatellitephoto of") > 3


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_class_token_position_orders_tokens(clip_model, position):
    from dasslite.clip import embed_tokens, tokenize

    learner = ContextPromptLearner(clip_model, CLASSNAMES, n_ctx=4, class_token_position=position)
    prompts = learner()
    assert prompts.shape == (3, 77, clip_model.ln_final.weight.shape[0])
    name_emb = embed_tokens(clip_model, tokenize(["Sea or Lake"]))[0, 1:4]  # 3 BPE tokens
    ctx = learner.ctx.data
    p = prompts[2].detach()
    if position == "end":
        segments = [(1, ctx), (5, name_emb)]
    elif position == "front":
        segments = [(1, name_emb), (4, ctx)]
    else:
        segments = [(1, ctx[:2]), (3, name_emb), (6, ctx[2:])]
    for start, expected in segments:
        assert torch.allclose(p[start:start + len(expected)], expected), (position, start)
    assert torch.allclose(p[0], learner.token_prefix[2, 0])
    # the "." and EOS follow in every layout
    eos = embed_tokens(clip_model, tokenize(["X X X X Sea or Lake."]))[0, 8:10]
    assert torch.allclose(p[8:10], eos)


def test_csc_context_is_per_class(clip_model):
    learner = ContextPromptLearner(clip_model, CLASSNAMES, n_ctx=2, csc=True)
    assert learner.ctx.shape == (3, 2, clip_model.ln_final.weight.shape[0])
    init = ContextPromptLearner(clip_model, CLASSNAMES, ctx_init="a photo of a", csc=True)
    assert init.ctx.shape[0] == 3 and torch.equal(init.ctx[0], init.ctx[2])


# -- trainer ---------------------------------------------------------------------------------------------------
def test_coop_step_updates_only_the_context(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32",
                                                                          "TRAINER.COOP.N_CTX", "4"])
    trainable = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_learner.ctx"]
    frozen_before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    ctx_before = tr.model.prompt_learner.ctx.detach().clone()
    tr.set_model_mode("train")
    assert tr.model.prompt_learner.training and not tr.model.image_encoder.training
    batch = next(iter(tr.train_loader_x))
    tr.batch_idx, tr.num_batches = 0, 5
    summary = tr.forward_backward(batch)
    assert set(summary) == {"loss", "acc"} and summary["loss"] > 0
    assert tr.model.prompt_learner.ctx.grad is not None and tr.model.prompt_learner.ctx.grad.abs().sum() > 0
    assert not torch.equal(tr.model.prompt_learner.ctx.detach(), ctx_before)
    for n, p in tr.model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None and torch.equal(p.detach(), frozen_before[n]), n
    logits = tr.model(batch["img"])
    assert logits.shape == (batch["img"].shape[0], 10)  # SUBSAMPLE_CLASSES all: the 10 EuroSAT classes


def test_eval_encodes_class_prompts_once_and_matches_uncached(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32",
                                                                          "DATALOADER.TEST.BATCH_SIZE", "7"])
    tr.set_model_mode("eval")
    calls = []
    original = tr.model.compute_class_features
    tr.model.compute_class_features = lambda: calls.append(1) or original()
    image = next(iter(tr.test_loader))["img"]
    with torch.no_grad():
        uncached = tr.model(image)
        with tr.model.cached_class_features():
            cached = tr.model(image)
    assert torch.allclose(cached, uncached, atol=1e-6)
    calls.clear()
    tr.test()
    assert len(tr.test_loader) > 1 and len(calls) == 1
    assert tr.model._cached is None  # the cache never outlives the evaluation


@pytest.mark.parametrize("prec", ["bf16", "fp32"])
def test_eval_cache_is_encoded_under_the_inference_autocast(eurosat_root, tiny_clip_checkpoint, tmp_path, prec):
    """test() encodes the cached class features in the same precision as an uncached forward (bf16 autocast here,
    fp16 autocast for amp on a GPU), so caching changes no logit."""
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", prec])
    tr.set_model_mode("eval")
    with torch.no_grad(), tr.autocast():
        uncached = tr.model.compute_class_features()
    seen = []
    original = tr.model.compute_class_features
    tr.model.compute_class_features = lambda: seen.append(original()) or seen[-1]
    tr.test()
    assert len(seen) == 1 and seen[0].dtype == uncached.dtype
    assert seen[0].dtype == (torch.bfloat16 if prec == "bf16" else torch.float32)
    assert torch.equal(seen[0], uncached)


def test_train_eval_resume_and_base_to_new(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "OPTIM.MAX_EPOCH", "2",
             "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=extra)
    assert res["complete"] and res["subsample_classes"] == "base" and res["total"] > 0
    assert os.path.isfile(os.path.join(out, "prompt_learner", "model.pth.tar-2"))
    log = open(os.path.join(out, "log.txt")).read()
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    tail = log.split("Finish training")[1]
    assert f"* accuracy: {res['accuracy']:.1f}%" in tail
    assert "epoch [1/2] batch [1/" in log and "lr 1.0000e-05" not in log.split("epoch [2/2]")[0].splitlines()[-1]

    # eval-only from the model dir reproduces the end-of-training accuracy
    ev = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval_base"), extra=extra,
                   flags=["--eval-only", "--model-dir", out, "--load-epoch", "2"])
    assert ev["accuracy"] == pytest.approx(res["accuracy"]) and ev["eval_only"]

    # rerunning into the finished dir resumes: no training epoch runs again, the test is repeated
    again = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=extra)
    log2 = open(os.path.join(out, "log.txt")).read()
    assert "Found checkpoint" in log2 and "epoch [" not in log2
    assert again["accuracy"] == pytest.approx(res["accuracy"])

    # new classes: the class-name buffers are rebuilt, the learnt context is loaded
    new = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "new"),
                    extra=extra[:-1] + ["new"], flags=["--eval-only", "--model-dir", out])
    assert new["subsample_classes"] == "new" and new["total"] > 0


def test_training_is_deterministic_for_a_seed(eurosat_root, tiny_clip_checkpoint, tmp_path):
    extra = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "2", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2"]
    ctxs = []
    for name in ("a", "b"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / name), extra=extra)
        ckpt = torch.load(tmp_path / name / "prompt_learner" / "model.pth.tar-1", weights_only=True)
        ctxs.append(ckpt["state_dict"]["ctx"])
        assert "token_prefix" in ckpt["state_dict"]
    assert torch.equal(ctxs[0], ctxs[1])


def test_csc_checkpoint_on_other_classes_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "csc")
    extra = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.CSC", "True",
             "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "all"]
    run_train(eurosat_root, tiny_clip_checkpoint, out, extra=extra)
    with pytest.raises(ValueError, match=r"ctx: checkpoint \(10, 2, 64\) vs model \(5, 2, 64\)"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "csc_new"),
                  extra=extra[:-1] + ["new"], flags=["--eval-only", "--model-dir", out])
    assert not os.path.exists(tmp_path / "csc_new" / "results.json")


def test_zero_shot_matches_manual_clip(eurosat_root, tiny_clip_checkpoint, tmp_path):
    from dasslite.clip import load_clip, tokenize

    res = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "zs"), trainer="ZeroshotCLIP",
                    config="vit_b16", extra=["TRAINER.ZSCLIP.PREC", "fp32"], flags=["--eval-only"])
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "zs2", trainer="ZeroshotCLIP", config="vit_b16",
                      extra=["TRAINER.ZSCLIP.PREC", "fp32"])
    close_logger()
    model = load_clip(tiny_clip_checkpoint).float()
    names = tr.dm.dataset.classnames
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenize([f"a centered satellite photo of {n}." for n in names])), dim=-1)
        correct = total = 0
        for batch in tr.test_loader:
            img = F.normalize(model.encode_image(batch["img"]), dim=-1)
            correct += (img @ text.t()).argmax(1).eq(batch["label"]).sum().item()
            total += len(batch["label"])
    assert res["accuracy"] == pytest.approx(100.0 * correct / total)
    with pytest.raises(RuntimeError, match="eval-only"):
        tr.train()


def test_unknown_trainer_lists_valid_names(eurosat_root, tiny_clip_checkpoint, tmp_path):
    with pytest.raises(KeyError, match="Valid names: .*CoOp.*ZeroshotCLIP"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "x"), trainer="CoOpp", config="vit_b16",
                  config_dir="CoOp")


def test_input_size_must_match_backbone(eurosat_root, tiny_clip_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="INPUT.SIZE"):
        make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["INPUT.SIZE", "(64, 64)"])
    close_logger()


@pytest.mark.parametrize("prec", ["fp16", "bf16", "amp"])
def test_every_precision_trains_a_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, prec):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", prec,
                                                                          "TRAINER.COOP.N_CTX", "2"])
    expected_dtype = torch.float16 if prec == "fp16" else torch.float32  # fp16 = CLIP's released weights
    assert tr.model.prompt_learner.ctx.dtype == expected_dtype and tr.model.dtype == expected_dtype
    assert tr.scaler is None  # no GradScaler without CUDA
    before = tr.model.prompt_learner.ctx.detach().clone()
    tr.set_model_mode("train")
    tr.batch_idx, tr.num_batches = 0, 5
    summary = tr.forward_backward(next(iter(tr.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert not torch.equal(tr.model.prompt_learner.ctx.detach(), before)


def test_grad_clip_bounds_the_update(eurosat_root, tiny_clip_checkpoint, tmp_path):
    extra = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "2", "OPTIM.NAME", "sgd", "OPTIM.MOMENTUM", "0.0",
             "OPTIM.WEIGHT_DECAY", "0.0", "OPTIM.WARMUP_EPOCH", "-1", "OPTIM.LR", "1.0"]
    batch = None
    steps = {}
    for clip in ("0.0", "1e-3"):
        tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / clip, extra=extra + ["TRAINER.COOP.GRAD_CLIP_NORM", clip])
        batch = batch or next(iter(tr.train_loader_x))
        before = tr.model.prompt_learner.ctx.detach().clone()
        tr.set_model_mode("train")
        tr.batch_idx, tr.num_batches = 0, 5
        tr.forward_backward(batch)
        steps[clip] = (tr.model.prompt_learner.ctx.detach() - before).norm().item()
    assert steps["0.0"] > 1e-3 * 1.5
    assert steps["1e-3"] == pytest.approx(1e-3, rel=1e-3)  # lr 1 * clipped grad norm


def test_update_lr_runs_at_the_last_batch_only(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32",
                                                                          "TRAINER.COOP.N_CTX", "2"])
    batch = next(iter(tr.train_loader_x))
    tr.set_model_mode("train")
    tr.num_batches = 3
    lrs = []
    for tr.batch_idx in range(3):
        tr.forward_backward(batch)
        lrs.append(tr.get_current_lr())
    assert lrs == pytest.approx([1e-5, 1e-5, 0.002])  # warm-up epoch, then the scheduler steps once


def test_best_val_checkpoint_is_saved_and_deployed(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "bestval")
    res = run_train(eurosat_root, tiny_clip_checkpoint, out,
                    extra=["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "2", "OPTIM.MAX_EPOCH", "2",
                           "DATASET.NUM_SHOTS", "2", "TEST.FINAL_MODEL", "best_val"])
    assert os.path.isfile(os.path.join(out, "prompt_learner", "model-best.pth.tar"))
    log = open(os.path.join(out, "log.txt")).read()
    assert "Evaluate on the *val* set" in log and "Deploy the model with the best val performance" in log
    best = torch.load(os.path.join(out, "prompt_learner", "model-best.pth.tar"), weights_only=True)
    assert best["val_result"] is not None and res["split"] == "test"
