"""FSMoE on tiny CLIPs: per-layer visual features against CLIP's own forward, the sparse layer MoE, the routing-
consistency loss by hand for every target, what learns, the batched fast path against a per-image 77-token loop
(logits and gradients), checkpoints, recipes, the routing analysis and a short base2new sweep on the demo world."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

import train
from dasslite import sweep as S
from dasslite.analysis.expert_usage import format_dataset_table, summarize_runs
from dasslite.clip.tiny import build_tiny_clip
from dasslite.clip.visual import ViTLayerEncoder, vit_head, vit_layer_features, vit_tokens
from dasslite.prompting.full_spectrum import FullSpectrumCLIP, FullSpectrumPromptLearner, token_groups
from dasslite.prompting.layer_moe import LayerExperts, SparseLayerMoE
from dasslite.prompting.routing import Routing
from dasslite.prompting.routing_consistency import RC_TARGETS, consistency_features, routing_consistency_loss
from dasslite.sweep import DEFAULT_CFGS
from tests.demo_fixtures import build_or_get_session_demo_world
from tests.trainer_harness import make_trainer, one_step, one_step_checking_updates, run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSNAMES = ["Annual Crop Land", "Forest", "Sea or Lake"]
FAST = ["TRAINER.FSMOE.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "TRAINER.FSMOE.LAYERS", "(0, 1)",
        "TRAINER.FSMOE.TOP_K", "2", "TRAINER.FSMOE.RC_NEGATIVES", "2", "TRAINER.FSMOE.EXPERT_HIDDEN_MULT", "0.5",
        "TRAINER.FSMOE.ROUTER_HIDDEN_MULT", "0.5", "TRAINER.FSMOE.METANET_HIDDEN_MULT", "0.5"]
CFG = "vit_b16_c8_ep10_batch32_coop"


@pytest.fixture(scope="module")
def clip4():
    """A tiny ViT CLIP with 4 blocks (3 shallow ones), fp32."""
    return build_tiny_clip(image_resolution=32, vision_layers=4, seed=0).float()


def small_learner(clip_model, **kw):
    torch.manual_seed(0)
    args = dict(n_ctx=4, top_k=2, expert_hidden_mult=0.5, router_hidden_mult=0.5, metanet_hidden_mult=0.5)
    args.update(kw)
    return FullSpectrumPromptLearner(clip_model, CLASSNAMES, **args)


# -- per-layer visual features ---------------------------------------------------------------------------------
def test_layer_features_shapes_and_equality_with_clip(clip4):
    visual = clip4.visual
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = vit_layer_features(visual, images)
        assert feats.layers.shape == (3, 4, 64) and feats.final.shape == (3, visual.output_dim)
        assert torch.equal(feats.final, F.normalize(clip4.encode_image(images), dim=-1))
        # block i's class token, by CLIP's own Transformer run over the first i + 1 blocks
        x = vit_tokens(visual, images).permute(1, 0, 2)
        for i, block in enumerate(visual.transformer.resblocks):
            x = block(x)
            assert torch.equal(feats.layers[:, i], x[0]), i
        assert torch.allclose(vit_head(visual, feats.layers[:, -1]), clip4.encode_image(images), atol=1e-6)
        # raw: the class token is not layer-normed (ln_post would give zero mean per row)
        assert feats.layers[:, 0].mean(-1).abs().max() > 1e-3
        # a hook sees batch-first tokens before each block; an identity hook changes nothing, another does
        seen = []
        same = vit_layer_features(visual, images, before_block=lambda i, t: seen.append((i, t.shape)) or t)
        assert torch.equal(same.layers, feats.layers) and seen == [(i, (3, 17, 64)) for i in range(4)]
        prompted = vit_layer_features(visual, images, before_block=lambda i, t: torch.cat([t, t[:, :1]], 1))
        assert not torch.allclose(prompted.final, feats.final)
        assert torch.equal(ViTLayerEncoder(visual)(images).final, feats.final)


def test_resnet_backbone_gets_a_clear_error():
    resnet = build_tiny_clip(vision="rn", vision_layers=1, vision_width=8, image_resolution=32)
    with pytest.raises(TypeError, match="ModifiedResNet.*Use a ViT backbone"):
        ViTLayerEncoder(resnet.visual)
    with pytest.raises(TypeError, match="FSMoE's shallow-layer experts need a CLIP ViT"):
        FullSpectrumPromptLearner(resnet, CLASSNAMES)


# -- the sparse layer MoE --------------------------------------------------------------------------------------
def test_gate_sparsity_and_the_moe_output_by_hand():
    torch.manual_seed(0)
    moe = SparseLayerMoE([2, 0, 1], in_dim=6, route_dim=5, out_dim=4, k=2, expert_hidden=7, router_hidden=8)
    layers, final = torch.randn(5, 3, 6), F.normalize(torch.randn(5, 5), dim=-1)
    out, routing = moe(layers, final)
    dense = routing.dense_weights()
    assert ((dense != 0).sum(1) == 2).all() and torch.allclose(dense.sum(1), torch.ones(5))
    assert torch.equal(dense != 0, torch.zeros_like(dense, dtype=torch.bool).scatter(1, routing.logits.topk(2).indices,
                                                                                       True))
    exp = moe.experts
    by_hand = torch.zeros(5, 4)
    for b in range(5):
        for e in range(3):
            if dense[b, e] == 0:
                continue
            x = layers[b, moe.layers[e]]  # expert e reads only its own block
            h = torch.relu(x @ exp.fc1_weight[e] + exp.fc1_bias[e, 0])
            by_hand[b] += dense[b, e] * (h @ exp.fc2_weight[e] + exp.fc2_bias[e, 0])
    assert torch.allclose(out, by_hand, atol=1e-6)
    # the gates are a softmax over the selected logits only
    top = routing.logits.topk(2)
    assert torch.allclose(dense.gather(1, top.indices), top.values.softmax(-1))


def test_low_rank_experts_are_products_and_smaller():
    full = LayerExperts(11, 768, 1536, 512)
    low = LayerExperts(11, 768, 1536, 512, rank=64)
    n_full, n_low = (sum(p.numel() for p in m.parameters()) for m in (full, low))
    assert n_full == 11 * 1_968_128  # the release's 21.65 M at ViT-B
    assert n_low == 11 * (64 * (768 + 1536) + 1536 + 64 * (1536 + 512) + 512)
    x, experts = torch.randn(2, 3, 768), torch.tensor([4, 7])
    h = torch.relu(x @ (low.fc1_a[experts] @ low.fc1_b[experts]) + low.fc1_bias[experts])
    assert torch.allclose(low(x, experts), h @ (low.fc2_a[experts] @ low.fc2_b[experts]) + low.fc2_bias[experts],
                          atol=1e-4)


def test_token_groups_and_their_order():
    assert token_groups(8, 4, "low_high") == ([0, 1, 2, 3], [4, 5, 6, 7])
    assert token_groups(8, 3, "high_low") == ([5, 6, 7], [0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="N_CTX_LOW"):
        token_groups(4, 4, "low_high")
    with pytest.raises(ValueError, match="TOKEN_ORDER"):
        token_groups(4, 2, "middle")


def test_contexts_shift_each_group_by_its_own_branch(clip4):
    learner = small_learner(clip4, token_order="high_low", n_low=1, layers=[1, 2])
    feats = vit_layer_features(clip4.visual, torch.randn(2, 3, 32, 32))
    ctx, meta, routing = learner.contexts(feats)
    low, _ = learner.moe(feats.layers, feats.final)
    assert torch.allclose(meta, learner.meta_net(feats.final))
    assert torch.allclose(ctx[:, 3], learner.ctx[3] + low, atol=1e-6)  # high_low: the one low-level token is last
    for j in range(3):
        assert torch.allclose(ctx[:, j], learner.ctx[j] + meta, atol=1e-6)
    assert learner.layers == [1, 2] and routing.logits.shape == (2, 2)


# -- the routing-consistency loss ------------------------------------------------------------------------------
def _hand_loss(x, pos, negs, temperature, cos=True):
    """-log softmax of [sim(pos), sim(negs)] / T at the positive, for the anchor x."""
    sim = (lambda a, b: F.cosine_similarity(a, b, dim=0)) if cos else (lambda a, b: a @ b)
    logits = torch.stack([sim(x, pos)] + [sim(x, n) for n in negs]) / temperature
    return -logits.log_softmax(0)[0]


@pytest.mark.parametrize("target", RC_TARGETS)
def test_routing_consistency_loss_by_hand_for_every_target(target):
    torch.manual_seed(1)
    router = SparseLayerMoE([0, 1, 2], 6, 5, 4, k=2, expert_hidden=3, router_hidden=8).router
    final = F.normalize(torch.randn(4, 5), dim=-1)
    meta = torch.randn(4, 4)
    routing = router(final)
    feats = consistency_features(target, meta, routing, probs_temperature=0.5)
    net = router.net
    expected = {"metanet": meta, "router_logits": net[2](torch.relu(net[0](final))),
                "router_probs": (net[2](torch.relu(net[0](final))) / 0.5).softmax(-1),
                "router_hidden": torch.relu(net[0](final))}[target]
    assert torch.allclose(feats, expected, atol=1e-6)
    # labels [0, 0, 1, 1], no self-positive, H = 2: the positive is the other image of the class, the negatives are
    # both images of the other class, so the loss is deterministic
    labels = torch.tensor([0, 0, 1, 1])
    partner = [1, 0, 3, 2]
    others = [[2, 3], [2, 3], [0, 1], [0, 1]]
    for similarity in ("cos", "dot"):
        got = routing_consistency_loss(feats, labels, num_negatives=2, temperature=0.1, similarity=similarity,
                                       self_positive=False)
        by_hand = torch.stack([_hand_loss(feats[b], feats[partner[b]], feats[others[b]], 0.1, similarity == "cos")
                               for b in range(4)]).mean()
        assert torch.allclose(got, by_hand, atol=1e-4), similarity


def test_routing_consistency_loss_self_positive_skips_and_gradient():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    labels = torch.tensor([0, 1, 2])  # each class once: the positive must be the anchor itself (cosine 1)
    got = routing_consistency_loss(feats, labels, num_negatives=2, temperature=0.5)
    by_hand = torch.stack([_hand_loss(feats[b], feats[b], feats[[i for i in range(3) if i != b]], 0.5)
                           for b in range(3)]).mean()
    assert torch.allclose(got, by_hand)
    got.backward()
    assert feats.grad.abs().sum() > 0
    # without the self-positive no anchor has a positive; with H = 3 none has enough negatives: 0, graph kept
    assert routing_consistency_loss(feats, labels, 2, 0.5, self_positive=False).item() == 0
    zero = routing_consistency_loss(feats, labels, 3, 0.5)
    assert zero.item() == 0 and zero.requires_grad
    # the two class-0 anchors have one negative only, so at H = 2 the class-1 anchor alone counts
    labels = torch.tensor([0, 0, 1])
    only = routing_consistency_loss(feats, labels, 2, 0.5)
    assert torch.allclose(only, _hand_loss(feats[2], feats[2], feats[[0, 1]], 0.5))


def test_consistency_features_errors():
    routing = Routing(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))
    with pytest.raises(ValueError, match="mlp router"):
        consistency_features("router_hidden", torch.zeros(2, 4), routing)
    with pytest.raises(ValueError, match="is not one of"):
        consistency_features("experts", torch.zeros(2, 4), routing)


# -- the fast path against CoCoOp's per-image, 77-token way -----------------------------------------------------
def _reference_logits(model, images):
    """One image at a time, its C full 77-token prompts through CLIP's own text blocks (the authors' loop)."""
    learner, rows = model.prompt_learner, []
    for i in range(images.shape[0]):
        feats = vit_layer_features(model.image_encoder.visual, images[i:i + 1])
        ctx, _, _ = learner.contexts(feats)
        prompts = learner.assemble(ctx.expand(learner.n_cls, -1, -1).unsqueeze(0))[0]  # [C, 77, D]
        text = F.normalize(model.text_encoder(prompts, learner.tokenized_prompts, reference=True), dim=-1)
        rows.append(model.logit_scale.exp() * feats.final @ text.t())
    return torch.cat(rows)


def test_fast_path_equals_the_per_image_reference_in_logits_and_gradients(clip4):
    learner = small_learner(clip4)
    model = FullSpectrumCLIP(clip4, learner, rc_weight=0.0)
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 1])
    calls = []
    encode = model.text_encoder._encode_prefixed
    model.text_encoder._encode_prefixed = lambda p, s, e: calls.append(tuple(s.shape[:2])) or encode(p, s, e)
    params = [p for p in learner.parameters() if p.requires_grad]

    def grads(logits):
        return torch.autograd.grad(F.cross_entropy(logits, labels), params, allow_unused=True)

    fast = model(images)
    assert calls == [(3, 3)]  # the B x C prompts in one call, each image's SOS + context once
    ref = _reference_logits(model, images)
    assert torch.allclose(fast, ref, atol=1e-4)
    for name, a, b in zip([n for n, p in learner.named_parameters() if p.requires_grad], grads(fast), grads(ref)):
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-3), name
    calls.clear()
    model.text_encoder.chunk_size = 2
    assert torch.allclose(model(images), fast, atol=1e-5) and calls == [(1, 2), (1, 1)] * 3
    # evaluation: nothing cached and nothing computed beyond the B x C prompts; the routing hook sees each batch
    assert model.instance_conditioned and not hasattr(model, "cached_class_features")
    seen = []
    model.routing_hook = seen.append
    with torch.no_grad():
        model(images)
    assert len(seen) == 1 and seen[0].indices.shape == (3, 2)


# -- the trainer -------------------------------------------------------------------------------------------------
def test_step_trains_only_tokens_meta_net_router_and_experts(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer="FSMoE", config=CFG, extra=FAST)
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    prefixes = ("prompt_learner.ctx", "prompt_learner.meta_net.", "prompt_learner.moe.router.",
                "prompt_learner.moe.experts.")
    assert trainable and all(n.startswith(prefixes) for n in trainable)
    assert all(any(n.startswith(p) for n in trainable) for p in prefixes)
    assert not any(p.requires_grad for p in tr.model.image_encoder.parameters())
    summary, batch = one_step_checking_updates(tr)
    assert summary["loss_rc"] > 0 and summary["loss"] == pytest.approx(summary["loss_ce"] + summary["loss_rc"])
    tr.set_model_mode("eval")
    with torch.no_grad():
        assert tr.model_inference(batch["img"]).shape == (batch["img"].shape[0], 10)


@pytest.mark.parametrize("prec", ["fp16", "bf16", "amp"])
def test_every_precision_trains_a_step_on_cpu(eurosat_root, tiny_clip_checkpoint, tmp_path, prec):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer="FSMoE", config=CFG,
                      extra=FAST + ["TRAINER.FSMOE.PREC", prec, "TRAINER.FSMOE.RC_TARGET", "metanet"])
    learner = tr.model.prompt_learner
    dtype = torch.float16 if prec == "fp16" else torch.float32
    assert learner.ctx.dtype == learner.moe.experts.fc1_weight.dtype == learner.meta_net.linear1.weight.dtype == dtype
    assert learner.moe.router.net[0].weight.dtype == torch.float32  # the router stays fp32
    before = learner.ctx.detach().clone()
    summary, _ = one_step(tr)
    assert all(math.isfinite(v) for v in summary.values()), summary
    assert not torch.equal(learner.ctx.detach(), before)


def test_config_errors(eurosat_root, tiny_clip_checkpoint, tmp_path):
    cases = [(["TRAINER.FSMOE.RC_TARGET", "experts"], "RC_TARGET"),
             (["TRAINER.FSMOE.TOKEN_ORDER", "mixed"], "TOKEN_ORDER"),
             (["TRAINER.FSMOE.RC_TARGET", "router_hidden", "TRAINER.FSMOE.ROUTER_HIDDEN_MULT", "0.0"], "mlp router"),
             (["TRAINER.FSMOE.TOP_K", "3"], "TOP_K"),  # 2 experts (blocks 0, 1)
             (["TRAINER.FSMOE.LAYERS", "(0, 5)"], "LAYERS"),
             (["TRAINER.FSMOE.RC_TEMPERATURE", "0.0"], "RC_TEMPERATURE")]
    for extra, match in cases:
        with pytest.raises(ValueError, match=match):
            make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer="FSMoE", config=CFG,
                         extra=FAST + extra)


def test_train_then_eval_checkpoint_round_trip_and_layer_mismatch(eurosat_root, tiny_clip_checkpoint, tmp_path):
    out = str(tmp_path / "base")
    extra = FAST + ["OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base"]
    res = run_train(eurosat_root, tiny_clip_checkpoint, out, trainer="FSMoE", config=CFG, extra=extra)
    assert res["complete"] and res["total"] > 0
    state = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=True)["state_dict"]
    assert state["moe.layers"].tolist() == [0, 1]
    assert {k.split(".")[0] for k in state} == {"ctx", "token_prefix", "token_suffix", "meta_net", "moe"}
    ev = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "eval"), trainer="FSMoE", config=CFG,
                   extra=extra, flags=["--eval-only", "--model-dir", out, "--load-epoch", "1"])
    assert ev["accuracy"] == pytest.approx(res["accuracy"])
    usage = json.load(open(os.path.join(tmp_path / "eval", "expert_usage.json")))
    assert usage["expert_names"] == ["block 0", "block 1"] and usage["top_k"] == 2
    # experts of other blocks, or of another shape, are refused with the key at fault
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "other", trainer="FSMoE", config=CFG,
                      extra=FAST + ["TRAINER.FSMOE.LAYERS", "(1, 0)"])
    with pytest.raises(ValueError, match=r"blocks \[0, 1\].*TRAINER.FSMOE.LAYERS \(0, 1\)"):
        tr.load_model(out, epoch=1)
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path / "rank", trainer="FSMoE", config=CFG,
                      extra=FAST + ["TRAINER.FSMOE.EXPERT_RANK", "4"])
    with pytest.raises((KeyError, ValueError), match="fc1"):
        tr.load_model(out, epoch=1)


RECIPES = {"cifar10": (0.005, 32, 10), "cifarplus": (0.004, 32, 10), "tinyimagenet": (0.004, 64, 60),
           "coop": (0.004, 32, 10)}


def test_recipes_load_with_the_released_values():
    folder = os.path.join(REPO, "configs", "trainers", "FSMoE")
    names = sorted(f[:-5] for f in os.listdir(folder))
    expected = sorted(["demo"] + [f"{arch}_c8_ep{ep}_batch{b}_{name}" for arch in ("vit_b16", "vit_b32")
                                  for name, (_, b, ep) in RECIPES.items()])
    assert names == expected and DEFAULT_CFGS["FSMoE"] in names
    for name in names:
        argv = ["--root", "/nonexistent", "--trainer", "FSMoE", "--output-dir", "/nonexistent",
                "--dataset-config-file", "configs/datasets/eurosat.yaml",
                "--config-file", os.path.join(folder, f"{name}.yaml")]
        cfg = train.setup_cfg(train.build_parser().parse_args(argv))
        c = cfg.TRAINER.FSMOE
        if name == "demo":
            assert (c.PREC, c.TOP_K, cfg.INPUT.SIZE) == ("fp32", 1, (64, 64))
            continue
        lr, batch, epochs = RECIPES[name.split("_")[-1]]
        assert (cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.MAX_EPOCH) == (lr, batch, epochs), name
        assert cfg.MODEL.BACKBONE.NAME == ("ViT-B/16" if name.startswith("vit_b16") else "ViT-B/32")
        assert (c.N_CTX, c.CTX_INIT, c.N_CTX_LOW, c.TOP_K, tuple(c.LAYERS), c.PREC) == (8, "", 4, 5, (), "fp16")
        assert (c.RC_WEIGHT, c.RC_NEGATIVES, c.RC_TEMPERATURE) == (0.1, 10, 0.01)
        assert (cfg.OPTIM.NAME, cfg.OPTIM.MOMENTUM, cfg.OPTIM.WEIGHT_DECAY, cfg.OPTIM.WARMUP_CONS_LR) == \
            ("sgd", 0.9, 5e-4, 1e-5)


def test_demo_base2new_end_to_end(tmp_path_factory, tmp_path, capsys):
    """The base2new sweep on the demo world (1 seed, 2 epochs), train.py run in-process: a Base / New / H table,
    the routing analysis next to the new-class results."""
    world = build_or_get_session_demo_world(tmp_path_factory)

    def in_process(job, env):
        train.main(train.build_parser().parse_args(job.argv[2:]))
        return 0

    out = tmp_path / "out"
    argv = ["base2new", "--trainer", "FSMoE", "--dataset", "demo", "--shots", "4", "--seeds", "1",
            "--output", str(out), "--", "OPTIM.MAX_EPOCH", "2"]
    assert S.main(argv, demo_world=lambda: world, runner=S.SequentialRunner(launcher=in_process)) == 0
    table = capsys.readouterr().out
    table = table[table.index("Base-to-new"):]
    run = out / "base2new" / "test_new" / "demo" / "shots_4" / "FSMoE" / "demo" / "seed1"
    new = json.load(open(run / "results.json"))
    assert new["complete"] and new["subsample_classes"] == "new" and new["accuracy"] > 50
    assert f"{new['accuracy']:.2f}" in table and "| demo" in table
    assert all(math.isfinite(v) for v in json.load(open(run / "expert_usage.json"))["summary"]["dataset_share"])
    # the per-dataset expert-usage tool reads FSMoE's layer routing like MoCoOp's prompt experts
    rows = summarize_runs([str(out / "base2new" / "test_new")])
    assert [r.dataset for r in rows] == ["EuroSAT"] and rows[0].usage.expert_names == ["block 0", "block 1"]
    assert rows[0].usage.total_images == new["total"] and "block 0" in format_dataset_table(rows)
