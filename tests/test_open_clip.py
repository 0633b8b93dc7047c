"""open_clip backbones through the shared text core: tiny open_clip models built in code with random weights (no
download), our text and image features against open_clip's own encode_text / encode_image, clear refusals for text
towers the core cannot drive, and a CoOp training step on an open_clip backbone."""
import json

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from dasslite.clip import TextEncoder, load_clip, tokenize  # noqa: E402
from dasslite.clip.open_clip_backbone import parse_open_clip_backbone  # noqa: E402

TINY = {"embed_dim": 64, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
TEXTS = ["a photo of a cat.", "x", "a centered satellite photo of a long winding river between green fields.",
         "a photo of a dog, a type of pet."]


def register(tmp_path_factory, name, config):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(folder / f"{name}.json"))


def save_random(tmp_path_factory, name, seed=0):
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None).eval()
    path = tmp_path_factory.mktemp("open_clip_ckpt") / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return model, str(path)


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """(open_clip's own model, our backbone name for the same weights)."""
    register(tmp_path_factory, "dasslite-tiny-vit", TINY)
    model, path = save_random(tmp_path_factory, "dasslite-tiny-vit")
    return model, f"open_clip:dasslite-tiny-vit/{path}"


def test_text_features_equal_open_clips_encode_text(tiny_open_clip):
    _, name = tiny_open_clip
    clip_model = load_clip(name)
    assert clip_model.dtype == torch.float16  # loaded like OpenAI's released weights
    model = clip_model.float().open_clip_model  # open_clip's own model on the very same weights
    tokens = tokenize(TEXTS)
    assert torch.equal(open_clip.get_tokenizer("dasslite-tiny-vit")(TEXTS).long(), tokens)
    with torch.no_grad():
        expected = model.encode_text(tokens)
    encoder = TextEncoder(clip_model)
    encoder.length_buckets = 3
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_tokens(tokens), expected, atol=1e-5, rtol=1e-5)  # buckets
        torch.testing.assert_close(encoder.encode_tokens(tokens, reference=True), expected, atol=1e-5, rtol=1e-5)
        # a shared prefix (SOS + "a photo of a") encoded once for every class name
        classes = tokenize([f"a photo of a {c}." for c in ("cat", "hot air balloon", "dog")])
        embeddings = clip_model.token_embedding(classes)
        shared = encoder.encode_prefixed(embeddings[0, :5], embeddings[:, 5:], classes.argmax(-1))
        torch.testing.assert_close(shared, model.encode_text(classes), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected[0], expected[1])  # distinct texts, distinct features


def test_image_features_equal_open_clips_encode_image(tiny_open_clip):
    original, name = tiny_open_clip
    clip_model = load_clip(name).float()
    model = clip_model.open_clip_model
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(clip_model.encode_image(images), model.encode_image(images))
        torch.testing.assert_close(clip_model.visual(images), model.encode_image(images))
        # the checkpoint's weights, through an fp16 round trip (OpenAI's convention)
        torch.testing.assert_close(clip_model.encode_image(images), original.encode_image(images), atol=2e-2,
                                   rtol=2e-2)
    assert clip_model.visual.input_resolution == 32 and clip_model.visual.output_dim == 64


def test_a_custom_text_tower_is_refused_naming_the_architecture(tmp_path_factory):
    register(tmp_path_factory, "dasslite-tiny-custom-text", dict(TINY, custom_text=True))
    _, path = save_random(tmp_path_factory, "dasslite-tiny-custom-text")
    with pytest.raises(ValueError, match=r'"dasslite-tiny-custom-text" cannot be used.*CustomTextCLIP'):
        load_clip(f"open_clip:dasslite-tiny-custom-text/{path}")


def test_last_token_pooling_is_refused(tmp_path_factory):
    config = json.loads(json.dumps(TINY))
    config["text_cfg"]["pool_type"] = "last"
    register(tmp_path_factory, "dasslite-tiny-lastpool", config)
    _, path = save_random(tmp_path_factory, "dasslite-tiny-lastpool")
    with pytest.raises(ValueError, match=r'pools the text by "last"'):
        load_clip(f"open_clip:dasslite-tiny-lastpool/{path}")


def test_backbone_names_are_parsed_and_bad_ones_explained(tiny_open_clip, tmp_path):
    _, name = tiny_open_clip
    path = name.split("/", 1)[1]
    assert parse_open_clip_backbone("open_clip:ViT-B-16/laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k")
    assert parse_open_clip_backbone(name) == ("dasslite-tiny-vit", path)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        parse_open_clip_backbone(f"open_clip:ViT-B-16/{tmp_path}/missing.pt")
    with pytest.raises(ValueError, match="names no weights"):
        load_clip("open_clip:dasslite-tiny-vit")
    with pytest.raises(ValueError, match="no architecture \"dasslite-tiny-vitt\". Did you mean dasslite-tiny-vit"):
        load_clip(f"open_clip:dasslite-tiny-vitt/{path}")


def test_coop_trains_a_step_on_an_open_clip_backbone(tiny_open_clip, eurosat_root, tmp_path):
    from tests.trainer_harness import make_trainer, one_step

    _, name = tiny_open_clip
    trainer = make_trainer(eurosat_root, name, tmp_path, trainer="CoOp", extra=["TRAINER.COOP.PREC", "fp16"])
    assert trainer.model.prompt_learner.ctx.dtype == torch.float16  # CLIP's fp16 weights, as for OpenAI's
    ctx_before = trainer.model.prompt_learner.ctx.detach().clone()
    losses, _ = one_step(trainer)
    assert torch.isfinite(torch.tensor(losses["loss"]))
    assert not torch.equal(trainer.model.prompt_learner.ctx, ctx_before)
    frozen = [n for n, p in trainer.model.named_parameters() if p.requires_grad and "prompt_learner" not in n]
    assert frozen == []


@pytest.mark.parametrize("trainer_name", ["CoCoOp", "KgCoOp", "LASP", "MoCoOp", "ZeroshotCLIP"])
def test_every_other_trainer_runs_on_an_open_clip_backbone(tiny_open_clip, eurosat_root, tmp_path, trainer_name):
    from tests.trainer_harness import make_trainer, one_step

    _, name = tiny_open_clip
    trainer = make_trainer(eurosat_root, name, tmp_path, trainer=trainer_name, config="demo")
    batch = next(iter(trainer.test_loader))
    if trainer_name == "ZeroshotCLIP":
        trainer.set_model_mode("eval")
        with torch.no_grad():
            logits = trainer.model_inference(batch["img"])
        assert logits.shape == (len(batch["img"]), 10) and torch.isfinite(logits).all()
        return
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    losses, _ = one_step(trainer)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed


def test_the_trainer_benchmark_accepts_an_open_clip_backbone(tiny_open_clip):
    """``bench_trainers.py --arch open_clip:ARCH``: random weights built in code; fast and reference paths agree."""
    import trainers  # noqa: F401
    from benchmarks import bench_trainers as bench
    from benchmarks import harness as H
    from dasslite.compat import TRAINER_REGISTRY

    args = bench.resolve(bench.build_parser().parse_args(["--smoke", "--arch", "open_clip:dasslite-tiny-vit"]))
    assert args.arch == ["open_clip:dasslite-tiny-vit"] and H.arch_resolution(args.arch[0]) == 32
    cpu = torch.device("cpu")
    master = H.random_clip(args.arch[0], cpu)
    assert master.dtype == torch.float16 and master.arch == "dasslite-tiny-vit"
    with torch.random.fork_rng(devices=[]):
        entry = bench.run_case("CoOp", TRAINER_REGISTRY.get("CoOp"), args.arch[0], 5, args, None, master, cpu)
    assert entry["error"] is None, entry["error"]
    assert entry["outputs_agree"] is True
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--arch", "ViT-B/17"])
