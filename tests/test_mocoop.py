"""MoCoOp: template splitting and BPE token counts, expert prompts, router, both auxiliary losses, gradient flow,
cached vs uncached inference, checkpoints (round trip, mismatched experts), expert usage, recipes."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from clip_templates import dataset_template_groups
from dasslite.clip import TextEncoder, bpe_encode, tokenize
from dasslite.prompting.expert_prompts import ExpertPromptLearner, split_template
from dasslite.prompting.hard_prompts import group_prototypes
from dasslite.prompting.losses import gate_target_scores, text_to_text_loss
from dasslite.prompting.mixture import mix_expert_logits
from dasslite.prompting.model import encode_class_templates
from dasslite.prompting.routing import (Routing, TopKRouter, boosted_top_k_target, load_balancing_loss,
                                        soft_target_kl, top_k_softmax)
from tests.trainer_harness import make_trainer as harness_make_trainer
from tests.trainer_harness import one_step, run_train

CFG = "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
FAST = ["TRAINER.MOCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2"]
EUROSAT = dataset_template_groups("EuroSAT")


def make_trainer(root, clip_path, out, extra=()):
    return harness_make_trainer(root, clip_path, out, trainer="MoCoOp", config=CFG, extra=extra)


# -- templates -> learnable tokens ------------------------------------------------------------------------------
def test_split_template_positions_and_bpe_counts():
    s = split_template("a photo of a {}, a type of aircraft.")
    assert (s.before, s.after, s.tail, s.position) == ("a photo of a", ", a type of aircraft", ".", "middle")
    s = split_template("{} texture.")
    assert (s.before, s.after, s.tail, s.position) == ("", "texture", ".", "front")
    # the authors counted words: " texture" gave 2 (one learnable EOS); BPE gives 1
    assert len(bpe_encode(s.after)) == 1
    assert split_template("a photo of a  {}.").before == "a photo of a"  # Food101's double space
    assert len(bpe_encode(split_template("a photo of a  {}.").before)) == 4
    # word counts understate BPE tokens: all of them become learnable
    assert len(bpe_encode(split_template("itap of a {}.").before)) == 4  # 3 words
    assert len(bpe_encode(split_template("A photo of the high-performance {}.").before)) == 7  # 5 words
    assert split_template("a photo of {}").tail == ""
    with pytest.raises(ValueError, match="no words around"):
        split_template("{}.")
    with pytest.raises(ValueError, match="exactly one"):
        split_template("a photo of {} and {}.")


def test_expert_prompts_start_as_their_templates(clip_model):
    names = ["cat", "sea_lion"]
    templates = ["{} texture.", "a photo of a {}, a type of aircraft.", "a photo of a {}."]
    learner = ExpertPromptLearner(clip_model, names, templates)
    assert learner.context_sizes() == [1, 9, 4]
    emb = clip_model.token_embedding
    prompts = learner(None, emb)
    tokens = learner.tokens()
    assert prompts.shape[:3] == tokens.shape == (3, 2, learner.length)
    for e, template in enumerate(templates):
        for c, name in enumerate(["cat", "sea lion"]):
            full = tokenize([template.format(name)])[0]
            # the concatenated pieces tokenize exactly like the whole sentence (class position follows the template)
            assert torch.equal(tokens[e, c], full[:learner.length]), (template, name)
            assert torch.allclose(prompts[e, c], emb(full[:learner.length]))  # contexts start at the word embeddings
    # the text features at initialisation are the hard prompts' features
    encoder = TextEncoder(clip_model)
    feats = encoder(prompts.reshape(6, learner.length, -1), tokens.reshape(6, -1)).reshape(3, 2, -1)
    for e, template in enumerate(templates):
        hard = encode_class_templates(encoder, names, [template])
        assert torch.allclose(F.normalize(feats[e], dim=-1), hard, atol=1e-5)
    # context slots: front template -> after the class tokens; middle -> around them
    sea_lion = len(bpe_encode("sea lion"))
    assert learner.ctx_slots[0, 1, 1 + sea_lion].item() == 0 and learner.ctx_slots[0, 1, 1].item() == -1
    assert learner.ctx_slots[1, 1, 1:5].tolist() == [0, 1, 2, 3]
    assert learner.ctx_slots[1, 1, 5 + sea_lion:10 + sea_lion].tolist() == [4, 5, 6, 7, 8]
    # a context change shows up exactly at its slots of the requested experts only
    with torch.no_grad():
        learner.ctx[1].add_(1.0)
    moved = learner([1], emb)[0]
    changed = (moved - prompts[1]).abs().sum(-1) > 0
    assert torch.equal(changed, learner.ctx_slots[1, :, :learner.length] >= 0)


def test_shared_prefix_path_equals_assembled_prompts(clip_model):
    """Experts are encoded with their SOS + leading context shared by all classes (``prefixed`` +
    ``encode_prefixed``); features and context gradients equal encoding the assembled prompts."""
    names = ["cat", "sea_lion", "golden retriever"]
    templates = ["{} texture.", "a photo of a {}, a type of aircraft.", "a good photo of the {}."]
    learner = ExpertPromptLearner(clip_model, names, templates)
    generator = torch.Generator().manual_seed(0)  # a fixed draw: the test must not depend on the global RNG
    with torch.no_grad():
        for p in learner.ctx:
            p.add_(0.01 * torch.randn(p.shape, generator=generator))  # away from the word embeddings
    encoder = TextEncoder(clip_model)
    emb = clip_model.token_embedding
    prompts, tokens = learner(None, emb), learner.tokens()
    assembled = encoder(prompts.reshape(9, learner.length, -1), tokens.reshape(9, -1)).reshape(3, 3, -1)
    assembled.pow(2).sum().backward()
    grads = [p.grad.clone() for p in learner.ctx]
    learner.zero_grad(set_to_none=True)
    shared = torch.stack([encoder.encode_prefixed(*learner.prefixed(e, emb)) for e in range(3)])
    torch.testing.assert_close(shared, assembled.detach(), atol=1e-5, rtol=0)
    shared.pow(2).sum().backward()
    for p, g in zip(learner.ctx, grads):
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-3)  # summation order differs
    assert [learner.prefixed(e, emb)[0].shape[0] for e in range(3)] == [1, 5, 6]  # SOS + context before {}


def test_experts_with_equal_leading_context_share_one_encoder_call(clip_model, monkeypatch):
    """``ExpertPromptLearner.encode`` runs experts whose leading contexts have the same length in one call (one
    prefix each); features and gradients equal encoding each expert alone, for any subset and order."""
    names = ["cat", "sea_lion", "golden retriever on a beach"]
    templates = ["a good photo of {}.", "{} texture.", "a photo of a {}, a type of aircraft.", "a bad photo of {}"]
    learner = ExpertPromptLearner(clip_model, names, templates)
    assert learner.n_before == [4, 0, 4, 4]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in learner.ctx:
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    encoder = TextEncoder(clip_model)
    emb = clip_model.token_embedding
    calls = []
    real = TextEncoder.encode_prefixed
    monkeypatch.setattr(TextEncoder, "encode_prefixed",
                        lambda self, p, s, e: calls.append(tuple(p.shape[:-1])) or real(self, p, s, e))
    for experts in (None, [3, 1, 0], [2]):
        ids = list(range(4)) if experts is None else experts
        alone = torch.stack([encoder.encode_prefixed(*learner.prefixed(e, emb)) for e in ids])
        alone.pow(2).sum().backward()
        grads = [None if p.grad is None else p.grad.clone() for p in learner.ctx]
        learner.zero_grad(set_to_none=True)
        calls.clear()
        grouped = learner.encode(encoder, experts)
        assert len(calls) == len({learner.n_before[e] for e in ids})
        torch.testing.assert_close(grouped, alone.detach(), atol=1e-5, rtol=0)
        grouped.pow(2).sum().backward()
        for p, g in zip(learner.ctx, grads):
            if g is None:
                assert p.grad is None
            else:
                torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-3)
        learner.zero_grad(set_to_none=True)
    assert calls == [(1, 5)]  # the last subset, expert 2 alone: one prefix of SOS + 4 words


def test_over_long_prompt_is_an_error(clip_model):
    with pytest.raises(ValueError, match="longer than CLIP's context length"):
        ExpertPromptLearner(clip_model, ["x " * 80], ["a photo of a {}."])


# -- router ---------------------------------------------------------------------------------------------------
def test_top_k_softmax_hand_computed():
    indices, weights = top_k_softmax(torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, 0.0, 0.0, 2.5]]), 2)
    assert indices.tolist() == [[1, 2], [3, 0]]
    e = math.e
    assert weights[0].tolist() == pytest.approx([e / (e + 1), 1 / (e + 1)])  # softmax over (3, 2) only
    assert weights[1].tolist() == pytest.approx([e ** 2 / (e ** 2 + 1), 1 / (e ** 2 + 1)])
    dense = Routing(torch.zeros(2, 4), indices, weights).dense_weights()
    assert dense[0].tolist() == pytest.approx([0, e / (e + 1), 1 / (e + 1), 0])
    with pytest.raises(ValueError, match="1 <= k <= number of experts"):
        top_k_softmax(torch.zeros(1, 3), 4)


def test_router_linear_mlp_and_noise():
    torch.manual_seed(0)
    router = TopKRouter(4, 3, k=2)
    with torch.no_grad():
        router.net.weight.copy_(torch.eye(3, 4))
        router.net.bias.zero_()
    r = router(torch.tensor([[0.1, 0.7, 0.3, 5.0]]))
    assert r.indices.tolist() == [[1, 2]] and r.logits[0].tolist() == pytest.approx([0.1, 0.7, 0.3])
    assert r.weights[0].tolist() == pytest.approx(torch.tensor([0.7, 0.3]).softmax(0).tolist())
    mlp = TopKRouter(4, 3, k=1, hidden_dim=8)
    assert mlp(torch.randn(5, 4)).indices.shape == (5, 1) and len(mlp.net) == 3
    noisy = TopKRouter(4, 3, k=2, noisy=True)
    x = torch.randn(6, 4)
    noisy.eval()
    assert torch.equal(noisy(x).logits, noisy(x).logits)  # no noise at evaluation
    noisy.train()
    assert not torch.equal(noisy(x).logits, noisy(x).logits)
    with pytest.raises(ValueError, match="TOP_K must be between 1 and the number of experts"):
        TopKRouter(4, 3, k=4)


def test_load_balancing_loss_hand_computed():
    # one image, logits (ln 3, 0): p = (3/4, 1/4); it picks expert 0: f = (1, 0); E * sum f p = 2 * 3/4
    r = Routing(torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0]]), torch.ones(1, 1))
    assert load_balancing_loss(r).item() == pytest.approx(1.5)
    balanced = Routing(torch.zeros(2, 2), torch.tensor([[0], [1]]), torch.ones(2, 1))
    assert load_balancing_loss(balanced).item() == pytest.approx(1.0)
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    load_balancing_loss(Routing(logits, torch.tensor([[0, 1]]), torch.ones(1, 2) / 2)).backward()
    assert logits.grad.abs().sum() > 0  # through the probabilities, not the counts


# -- auxiliary losses ------------------------------------------------------------------------------------------
def test_gate_target_and_kl_hand_computed():
    target = boosted_top_k_target(torch.tensor([[0.2, 0.5, 0.3]]), k=2, boost=10.0)
    z = torch.tensor([0.2, 10.5, 10.3])
    assert target[0].tolist() == pytest.approx((z.exp() / z.exp().sum()).tolist())
    half = boosted_top_k_target(torch.tensor([[0.2, 0.5, 0.3]]), k=2, boost=10.0, temperature=2.0)
    assert half[0].tolist() == pytest.approx((z / 2).softmax(0).tolist())
    q = target[0]
    expected = float((q * q.log()).sum() + math.log(3))  # KL(q || uniform)
    assert soft_target_kl(torch.zeros(1, 3), target).item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_kl(q.log()[None], target).item() == pytest.approx(0.0, abs=1e-6)


def test_gate_target_scores_class_specific_and_agnostic():
    prototypes = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],  # group 0, classes 0 and 1
                               [[0.6, 0.8], [0.8, 0.6]]])  # group 1
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows = torch.tensor([1, 0])  # image 0 is class 1, image 1 is class 0
    specific = gate_target_scores(image, prototypes, rows)
    assert torch.allclose(specific, torch.tensor([[0.0, 0.8], [0.0, 0.8]]))
    r = 1 / math.sqrt(2)  # both groups average to the diagonal direction
    assert torch.allclose(gate_target_scores(image, prototypes), torch.full((2, 2), r))


def test_grouped_text_loss_hand_computed():
    learned = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one expert, two classes
    prototypes = torch.tensor([[[0.6, 0.8], [0.8, 0.6]]])
    # scale 1 (the authors' code): learned class c picks prototype c among group e's prototypes
    expected = (-math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.8)))
                - math.log(math.exp(0.6) / (math.exp(0.8) + math.exp(0.6)))) / 2
    assert text_to_text_loss(learned, prototypes, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_mix_expert_logits_hand_computed():
    per_expert = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # B=1, n=3 experts, C=2
    logits = mix_expert_logits(per_expert, torch.tensor([[2, 0]]), torch.tensor([[0.75, 0.25]]))
    assert logits[0].tolist() == pytest.approx([0.75 * 5 + 0.25 * 1, 0.75 * 6 + 0.25 * 2])


# -- the model inside the trainer ------------------------------------------------------------------------------
def test_model_structure_virtual_classes_and_gate_indexing(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["DATASET.SUBSAMPLE_CLASSES", "base"])
    model = tr.model
    learner = model.prompt_learner
    base_names = list(tr.dm.dataset.classnames)
    assert learner.num_experts == 6 and [s.template for s in learner.splits] == EUROSAT.heads
    assert len(learner.classnames) == 10 and learner.classnames[:5] == base_names  # base first, label order
    assert model.class_index.tolist() == [0, 1, 2, 3, 4]
    assert model.hard_features.templates == list(EUROSAT.templates) and model.group_sizes == list(EUROSAT.sizes)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert [n for n in trainable if "ctx" in n] == [f"prompt_learner.ctx.{e}" for e in range(6)]
    assert {"prompt_learner.router.net.weight", "prompt_learner.router.net.bias",
            "prompt_learner.correction.vector"} <= set(trainable)

    batch = next(iter(tr.train_loader_x))
    image, label = batch["img"], batch["label"]
    out = model.forward_train(image, label)
    assert set(out) == {"logits", "loss_ce", "loss_text", "loss_gate"} and out["logits"].shape == (8, 5)
    # the gating target uses the prototypes of each image's own class: row = label in the label-aligned list
    with torch.no_grad():
        feats = model.encode_image(image)
        protos = group_prototypes(model.hard_features(model.text_encoder), EUROSAT.sizes)
        scores = torch.einsum("bd,gbd->bg", feats.float(), protos[:, label])
        target = boosted_top_k_target(scores, 2, 10.0)
        logits = model.route(feats).logits
        expected = (target * (target.log() - logits.log_softmax(-1))).sum(-1).mean()
        assert model.gate_loss(feats, model.route(feats), label).item() == pytest.approx(expected.item(), rel=1e-5)
        model.gate_target = "agnostic"
        agnostic = F.normalize(protos.mean(1), dim=-1)
        target = boosted_top_k_target(feats.float() @ agnostic.t(), 2, 10.0)
        expected = (target * (target.log() - logits.log_softmax(-1))).sum(-1).mean()
        assert model.gate_loss(feats, model.route(feats), label).item() == pytest.approx(expected.item(), rel=1e-5)
        # the text loss: every encoded expert against its own group's prototypes over all 10 classes
        used = torch.tensor([1, 4])
        learned = model.expert_features(used)
        assert learned.shape[:2] == (2, 10)
        # reduced over all 6 experts (the authors' scaling): the 4 experts not encoded count as CE log(10)
        encoded_mean = text_to_text_loss(learned, protos[used], 1.0).item()
        assert model.text_loss(learned, used).item() == pytest.approx(
            (2 * encoded_mean + 4 * math.log(10)) / 6, rel=1e-6)
        model.text_loss_reduction = "encoded"
        assert model.text_loss(learned, used).item() == pytest.approx(encoded_mean, rel=1e-6)


def force_experts(model, experts):
    """Make the router pick ``experts`` for every image (a large bias on them, zero weights)."""
    with torch.no_grad():
        linear = model.prompt_learner.router.net
        linear.weight.zero_()
        linear.bias.fill_(-5.0)
        for rank, e in enumerate(experts):
            linear.bias[e] = 5.0 - rank


def test_only_selected_experts_are_encoded_and_get_gradients(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["TRAINER.MOCOOP.FINETUNE_VIT_LN", "False"])
    model = tr.model
    force_experts(model, [3, 1])
    encoded = []
    original = model.expert_features
    model.expert_features = lambda experts=None: encoded.append(experts.tolist()) or original(experts)
    batch = next(iter(tr.train_loader_x))
    out = model.forward_train(batch["img"], batch["label"])
    assert encoded == [[1, 3]]
    out["loss_ce"].backward(retain_graph=True)
    ctx = model.prompt_learner.ctx
    assert ctx[1].grad.abs().sum() > 0 and ctx[3].grad.abs().sum() > 0
    assert all(ctx[e].grad is None for e in (0, 2, 4, 5))
    assert model.prompt_learner.router.net.bias.grad[[1, 3]].abs().sum() > 0  # through the top-k weights
    assert model.prompt_learner.router.net.bias.grad[[0, 2, 4, 5]].abs().sum() == 0
    model.zero_grad(set_to_none=True)
    (out["loss_text"] + out["loss_gate"]).backward()
    assert all(ctx[e].grad is None for e in (0, 2, 4, 5))  # the text loss covers the encoded experts only
    assert (model.prompt_learner.router.net.bias.grad.abs() > 0).all()  # the gating loss reaches every logit
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name

    # a full trainer step changes only trainable state; the loss is the sum of the logged terms
    model.expert_features = original
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    summary, _ = one_step(tr, batch)
    assert summary["loss"] == pytest.approx(summary["loss_ce"] + summary["loss_text"] + summary["loss_gate"], rel=1e-5)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)


def test_encode_all_experts_regularises_every_expert(eurosat_root, tiny_clip_checkpoint, tmp_path):
    """The authors' training: every expert encoded each step; the CE is unchanged, the text loss covers all."""
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + ["TRAINER.MOCOOP.ENCODE_ALL_EXPERTS", "True"])
    model = tr.model
    force_experts(model, [3, 1])
    batch = next(iter(tr.train_loader_x))
    out = model.forward_train(batch["img"], batch["label"])
    out["loss_text"].backward(retain_graph=True)
    assert all(p.grad.abs().sum() > 0 for p in model.prompt_learner.ctx)
    with torch.no_grad():
        learned = model.expert_features()
        assert out["loss_text"].item() == pytest.approx(
            5.0 * text_to_text_loss(learned, model.group_prototypes(), 1.0).item(), rel=1e-5)
        model.encode_all_experts = False
        selected = model.forward_train(batch["img"], batch["label"])
    assert torch.allclose(selected["logits"], out["logits"], atol=1e-5)  # same top-k mixture either way


def test_cached_uncached_and_train_path_agree(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path,
                      FAST + ["DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.LR", "0.5", "OPTIM.WARMUP_EPOCH", "0",
                              "DATALOADER.TEST.BATCH_SIZE", "7"])
    for _ in range(2):
        one_step(tr)
    tr.set_model_mode("eval")
    model = tr.model
    image = next(iter(tr.test_loader))["img"]
    with torch.no_grad():
        uncached = model(image)
        with model.cached_class_features():
            cached = model(image)
        train_path = model.forward_train(image, torch.zeros(len(image), dtype=torch.long))["logits"]
    assert uncached.shape == (len(image), 5)
    assert torch.allclose(cached, uncached, atol=1e-5) and torch.allclose(train_path, uncached, atol=1e-5)
    calls = []
    original = model.expert_features
    model.expert_features = lambda experts=None: calls.append(experts) or original(experts)
    tr.test()
    assert len(tr.test_loader) > 1 and calls == [None] and model._cached is None  # all experts, once


def test_same_seed_same_step(eurosat_root, tiny_clip_checkpoint, tmp_path):
    losses = []
    for run in ("a", "b"):
        tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / run, FAST + ["OPTIM.WARMUP_EPOCH", "0"])
        torch.manual_seed(0)
        summary, _ = one_step(tr)
        losses.append((summary, tr.model.prompt_learner.router.net.weight.detach().clone()))
    assert losses[0][0] == losses[1][0] and torch.equal(losses[0][1], losses[1][1])


# -- end to end: train, evaluate on new classes, checkpoints, expert usage ----------------------------------------
def test_train_eval_new_checkpoint_and_mismatched_experts(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = FAST + ["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "1", "DATASET.SUBSAMPLE_CLASSES", "base"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, trainer="MoCoOp", config=CFG, extra=extra)
    assert res["complete"] and res["subsample_classes"] == "base"
    log = open(os.path.join(out, "log.txt")).read()
    assert "Classes for the text loss: 10 (5 with images + 5 virtual)" in log and "loss_gate" in log
    ckpt = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)
    keys = set(ckpt["state_dict"])
    assert {"ctx.0", "ctx.5", "router.net.weight", "correction.vector", "visual_ln.0.weight",
            "expert_definition"} <= keys
    assert not any(k.startswith(("hard_features", "image_encoder", "text_encoder", "prompt_tokens")) for k in keys)

    # expert usage of the final test: images x k selections, files next to results.json
    usage = json.load(open(os.path.join(out, "expert_usage.json")))
    assert sum(map(sum, usage["counts"])) == 2 * res["total"] and os.path.isfile(os.path.join(out, "expert_usage.png"))

    again = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval_base"), trainer="MoCoOp", config=CFG,
                      extra=extra, flags=["--eval-only", "--model-dir", out, "--load-epoch", "2"])
    assert again["accuracy"] == pytest.approx(res["accuracy"])
    new_extra = extra[:-1] + ["new"]
    new = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "new"), trainer="MoCoOp", config=CFG,
                    extra=new_extra, flags=["--eval-only", "--model-dir", out])
    assert new["subsample_classes"] == "new" and new["total"] > 0
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "new2", new_extra)
    tr.load_model(out)
    for e in range(6):
        assert torch.equal(tr.model.prompt_learner.ctx[e], ckpt["state_dict"][f"ctx.{e}"])
    assert torch.equal(tr.model.prompt_learner.router.net.weight, ckpt["state_dict"]["router.net.weight"])
    assert tr.model.hard_features.features is None  # evaluation never encodes the hard templates

    # other experts (ImageNet's 20 groups) are refused with the fix in the message
    with pytest.raises(ValueError, match="6 experts from the template groups of EuroSAT.*TEMPLATE_GROUPS EuroSAT"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "imnet"), trainer="MoCoOp", config=CFG,
                  extra=new_extra + ["TRAINER.MOCOOP.TEMPLATE_GROUPS", "ImageNet"],
                  flags=["--eval-only", "--model-dir", out])
    # same number and shapes of experts but other templates: still refused (no silent same-shape load)
    groups = {"datasets": {"EuroSAT": {"templates": [t.replace("photo", "picture") for t in EUROSAT.templates],
                                       "groups": list(EUROSAT.sizes)}}}
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups))
    with pytest.raises(ValueError, match="was trained with 6 experts"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "other"), trainer="MoCoOp", config=CFG,
                  extra=new_extra + ["TRAINER.MOCOOP.GROUPS_FILE", str(path)], flags=["--eval-only", "--model-dir", out])
    # another router shape: the strict state-dict check names the keys
    with pytest.raises(ValueError, match="router.net"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "mlp"), trainer="MoCoOp", config=CFG,
                  extra=new_extra + ["TRAINER.MOCOOP.ROUTER", "mlp"], flags=["--eval-only", "--model-dir", out])
    assert not os.path.exists(os.path.join(tmp_path, "imnet", "results.json"))


@pytest.mark.parametrize("key, value, message", [("ROUTER", "conv", 'ROUTER "conv" is not one of linear, mlp'),
                                                 ("GATE_TARGET", "image", 'GATE_TARGET "image" is not one of'),
                                                 ("TEXT_LOSS_WEIGHT", "-1.0", "TEXT_LOSS_WEIGHT must be >= 0"),
                                                 ("TOP_K", "7", "TOP_K must be between 1 and the number of experts"),
                                                 ("TEMPLATE_GROUPS", "Nowhere", 'No template groups for dataset "Nowhere"')])
def test_bad_config_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path, key, value, message):
    with pytest.raises((ValueError, KeyError), match=message):
        make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, FAST + [f"TRAINER.MOCOOP.{key}", value])


@pytest.mark.parametrize("config", sorted(f[:-5] for f in os.listdir("configs/trainers/MoCoOp") if f.endswith(".yaml")))
def test_every_recipe_merges(config):
    argv = ["--trainer", "MoCoOp", "--dataset-config-file", "configs/datasets/eurosat.yaml",
            "--config-file", f"configs/trainers/MoCoOp/{config}.yaml"]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    c = cfg.TRAINER.MOCOOP
    assert c.TOP_K == 2 and c.TEXT_LOSS_WEIGHT == 5.0 and c.GATE_LOSS_WEIGHT == 1.0 and c.FINETUNE_VIT_LN
    if config != "demo":
        assert c.PREC == "amp" and c.GRAD_CLIP_NORM == 1.0 and cfg.INPUT.SIZE == (224, 224)
        assert f"ep{cfg.OPTIM.MAX_EPOCH}_batch{cfg.DATALOADER.TRAIN_X.BATCH_SIZE}_" in config


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_low_precision_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, prec):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path,
                      FAST[2:] + ["TRAINER.MOCOOP.PREC", prec, "OPTIM.WARMUP_EPOCH", "0"])
    learner = tr.model.prompt_learner
    before = [p.detach().clone() for p in learner.ctx]
    summary, _ = one_step(tr)
    assert math.isfinite(summary["loss"]) and summary["loss_text"] > 0
    assert learner.router.net.weight.dtype == torch.float32
    assert any(not torch.equal(p.detach(), b) for p, b in zip(learner.ctx, before))


def test_one_expert_without_routing_or_extra_losses_is_lasp(eurosat_root, tiny_clip_checkpoint, tmp_path):
    """MoCoOp with a single "a photo of a {}." expert, top-1, no text or gating loss is LASP without its text loss
    (same prompt, same correction vector, same LayerNorm tuning): one step must move them identically."""
    groups = tmp_path / "one.json"
    groups.write_text(json.dumps({"datasets": {"EuroSAT": {"templates": ["a photo of a {}."], "groups": [1]}}}))
    common = ["DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATASET.NUM_SHOTS", "2", "OPTIM.LR", "0.5",
              "OPTIM.WARMUP_EPOCH", "0"]
    moe = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "m", common + [
        "TRAINER.MOCOOP.PREC", "fp32", "TRAINER.MOCOOP.GROUPS_FILE", str(groups), "TRAINER.MOCOOP.TOP_K", "1",
        "TRAINER.MOCOOP.TEXT_LOSS_WEIGHT", "0.0", "TRAINER.MOCOOP.GATE_LOSS_WEIGHT", "0.0"])
    lasp = harness_make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "l", trainer="LASP", config=CFG,
                                extra=common + ["TRAINER.LASP.PREC", "fp32", "TRAINER.LASP.LAMBDA", "0.0"])
    batch = next(iter(moe.train_loader_x))
    start = lasp.model.prompt_learner.ctx.detach().clone()
    assert torch.equal(moe.model.prompt_learner.ctx[0], start)
    one_step(moe, batch)
    one_step(lasp, batch)
    assert not torch.allclose(lasp.model.prompt_learner.ctx, start, atol=1e-3)
    assert torch.allclose(moe.model.prompt_learner.ctx[0], lasp.model.prompt_learner.ctx, atol=1e-5)
    assert torch.allclose(moe.model.prompt_learner.correction.vector, lasp.model.prompt_learner.correction.vector,
                          atol=1e-6)
    ln_moe, ln_lasp = moe.model.prompt_learner.visual_ln[0].weight, lasp.model.prompt_learner.visual_ln[0].weight
    assert not torch.equal(ln_moe, torch.ones_like(ln_moe)) and torch.allclose(ln_moe, ln_lasp, atol=1e-6)


def test_groups_file_is_found_in_clip_templates(tmp_path, monkeypatch):
    from clip_templates import GROUPS_FILE, resolve_groups_file

    assert resolve_groups_file("") == GROUPS_FILE
    shipped = resolve_groups_file("demo_groups.json")
    assert os.path.isfile(shipped) and os.path.dirname(shipped) == os.path.dirname(GROUPS_FILE)
    demo = dataset_template_groups("EuroSAT", "demo_groups.json")
    assert demo.sizes == (3, 2, 3) and demo.heads[0] == "a centered satellite photo of {}."
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_groups.json").write_text(json.dumps({"datasets": {"EuroSAT": {"templates": ["a {}."],
                                                                                   "groups": [1]}}}))
    assert dataset_template_groups("EuroSAT", "demo_groups.json").sizes == (1,)  # a file in the cwd wins
    with pytest.raises(FileNotFoundError, match="missing.json"):
        dataset_template_groups("EuroSAT", "missing.json")


def test_dg_sweep_evaluates_every_target_with_the_imagenet_experts(tiny_clip_checkpoint, tmp_path, capsys):
    """`dg` end to end on tiny ImageNet-layout trees: one ImageNet training, then ImageNet-V2 (same classes) and
    ImageNet-A (another class list) evaluated from it with ImageNet's 20 experts, and the DG table."""
    from dasslite import sweep
    from tests.dataset_fixtures import make_imagenet_a_tree, make_imagenet_tree, make_imagenetv2_tree
    from tests.trainer_harness import TINY_INPUT

    root = tmp_path / "data"
    make_imagenet_tree(str(root), n_classes=3, n_train=4, n_val=2)
    make_imagenetv2_tree(str(root))
    make_imagenet_a_tree(str(root))
    out = tmp_path / "out"
    rc = sweep.main(["dg", "--trainer", "MoCoOp", "--data", str(root), "--shots", "2", "--seeds", "1",
                     "--targets", "imagenetv2", "imagenet_a", "--output", str(out), "--",
                     "MODEL.BACKBONE.NAME", tiny_clip_checkpoint, *TINY_INPUT, "OPTIM.MAX_EPOCH", "1",
                     "TRAINER.MOCOOP.PREC", "fp32"], environ=dict(os.environ))
    printed = capsys.readouterr().out
    assert rc == 0, printed[-3000:]
    cfg = "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet"
    for target in ("imagenetv2", "imagenet_a"):
        run = out / "dg" / "test" / target / "shots_2" / "MoCoOp" / cfg / "seed1"
        record = json.loads((run / "results.json").read_text())
        assert record["complete"] and record["total"] > 0
        log = (run / "log.txt").read_text()
        assert "Experts: 20 template groups of ImageNet" in log and "Loading weights to prompt_learner" in log
        assert json.loads((run / "expert_usage.json").read_text())["expert_names"][0].startswith("0: a photo of a {}")
    assert "imagenetv2" in printed and "imagenet_a" in printed
