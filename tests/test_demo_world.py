"""The offline demo world: EuroSAT's exact layout, a loadable OpenAI-format CLIP, determinism, caching, golden numbers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dasslite.demo.world as world_module
from dasslite.clip._import import import_clip
from dasslite.demo import (CLASSNAMES, FOLDERS, DemoRecipe, default_cache_dir, ensure_demo_world, load_world,
                           world_dir_name, zero_shot_accuracy)
from dasslite.demo import pretrain, scenes
from dasslite.demo.__main__ import main as demo_cli
from tests.demo_fixtures import demo_world  # noqa: F401,F811  (the session fixture)

EXPECTED_CLASSNAMES = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                       "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
                       "River", "Sea or Lake"]

# Golden numbers of the default recipe (seed 0), measured with torch 2.14 on x86-64. Anything that changes them
# (generator, recipe, pre-training, loading) must update them deliberately, and bump GENERATOR_VERSION.
GOLDEN_ZERO_SHOT = 0.55        # 165 / 300 test images, template "a centered satellite photo of {}."
GOLDEN_ZERO_SHOT_TOL = 0.04    # other CPUs / BLAS builds reorder float sums; 300 pre-training steps amplify that
GOLDEN_CLASS_MEANS = [(111.5, 105.05, 72.75), (54.4, 75.9, 51.95), (89.87, 102.57, 62.68), (109.16, 127.89, 76.26),
                      (141.6, 132.05, 127.81), (113.33, 126.39, 73.08), (112.15, 113.17, 78.3),
                      (118.17, 128.55, 103.71), (119.2, 124.06, 87.76), (37.18, 62.73, 77.66)]

QUIET = lambda message: None  # noqa: E731


# ------------------------------------------------------------------------------------------------ the real world
def test_layout_matches_eurosat(demo_world):
    image_root = Path(demo_world.root) / "eurosat" / "2750"
    folders = sorted(p.name for p in image_root.iterdir())
    assert folders == list(FOLDERS) == sorted(FOLDERS)
    assert list(CLASSNAMES) == EXPECTED_CLASSNAMES
    on_disk = {f"{p.parent.name}/{p.name}" for p in image_root.glob("*/*")}
    assert all(name.endswith(".jpg") for name in on_disk)

    split_path = Path(demo_world.root) / "eurosat" / "split_zhou_EuroSAT.json"
    assert split_path == demo_world.split_file
    text = split_path.read_text()
    split = json.loads(text)
    assert text == json.dumps(split, indent=4, separators=(",", ": "))  # Dassl's write_json format
    assert list(split) == ["train", "val", "test"]
    listed = set()
    recipe = demo_world.recipe
    for name, per_class in (("train", recipe.n_train), ("val", recipe.n_val), ("test", recipe.n_test)):
        counts = [0] * len(FOLDERS)
        for item in split[name]:
            relpath, label, classname = item
            assert isinstance(relpath, str) and type(label) is int and isinstance(classname, str)
            folder, filename = relpath.split("/")
            assert filename.startswith(folder + "_") and filename.endswith(".jpg")
            assert label == folders.index(folder)
            assert classname == EXPECTED_CLASSNAMES[label]
            assert (image_root / relpath).is_file()
            assert relpath not in listed  # no image in two splits
            listed.add(relpath)
            counts[label] += 1
        assert counts == [per_class] * len(FOLDERS), name
    assert listed == on_disk  # and nothing unlisted

    with Image.open(image_root / split["test"][0][0]) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64))


def test_checkpoint_loads_with_openai_build_model(demo_world):
    clip = import_clip()
    state = torch.load(demo_world.clip_checkpoint)  # weights_only load: a plain tensor dict
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = clip.model.build_model(state)
    assert model.visual.input_resolution == 64  # = INPUT.SIZE of the demo configs
    assert model.visual.conv1.kernel_size == (8, 8)
    assert model.visual.transformer.width in (64, 128) and model.visual.transformer.layers in (2, 3)
    assert model.context_length == 77 and model.vocab_size == 49408
    assert model.transformer.width == 64 and model.transformer.layers == 2
    tokens = clip.tokenize(["a centered satellite photo of Forest."])
    with torch.no_grad():
        image_features = model.float().encode_image(torch.zeros(2, 3, 64, 64))
        text_features = model.encode_text(tokens)
    assert image_features.shape == (2, 64) and text_features.shape == (1, 64)

    from dasslite.clip import load_clip  # the trainers' loader accepts it as MODEL.BACKBONE.NAME
    assert load_clip(str(demo_world.clip_checkpoint)).visual.input_resolution == 64


def test_zero_shot_accuracy_is_mediocre_and_pinned(demo_world):
    accuracy = zero_shot_accuracy(demo_world)
    assert 0.3 < accuracy < 0.95, "zero-shot CLIP must be clearly above chance (0.1) but leave room to learn"
    assert accuracy == pytest.approx(demo_world.info["zero_shot_test_accuracy"], abs=1e-9)
    assert accuracy == pytest.approx(GOLDEN_ZERO_SHOT, abs=GOLDEN_ZERO_SHOT_TOL), (
        f"zero-shot accuracy {accuracy:.4f} moved away from the golden {GOLDEN_ZERO_SHOT}: the demo world changed")


def test_marker_and_cli_reuse_the_built_world(demo_world, capsys):
    info = demo_world.info
    assert info["recipe"] == demo_world.recipe.to_dict() and info["recipe_sha256"] == demo_world.recipe.digest()
    assert demo_world.path.name == world_dir_name(DemoRecipe()) == "v1"
    assert load_world(demo_world.path, verify=True) == demo_world
    assert demo_cli(["--cache-dir", str(demo_world.path.parent)]) == 0  # already built: prints at once
    out = capsys.readouterr().out.splitlines()
    assert out == [f"root: {demo_world.root}", f"clip_checkpoint: {demo_world.clip_checkpoint}"]
    assert demo_cli(["--cache-dir", str(demo_world.path.parent), "--field", "clip_checkpoint"]) == 0
    assert capsys.readouterr().out == f"{demo_world.clip_checkpoint}\n"


def test_eurosat_reader_reads_the_world(demo_world, tmp_path):
    eurosat = pytest.importorskip("datasets.eurosat")
    from dasslite.config import get_cfg_default

    root = tmp_path / "data"
    shutil.copytree(demo_world.root, root)  # the reader caches few-shot splits next to the data
    cfg = get_cfg_default()
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.DATASET.NUM_SHOTS, cfg.SEED = "EuroSAT", str(root), 16, 1
    dataset = eurosat.EuroSAT(cfg)
    assert len(dataset.train_x) == 16 * 10 and len(dataset.test) == 30 * 10
    assert dataset.classnames == EXPECTED_CLASSNAMES


# ---------------------------------------------------------------------------------------- generator and recipe
def test_generator_golden_statistics():
    """Per-class mean RGB of a few scenes: catches silent generator changes (robust to last-bit float noise)."""
    for label, expected in enumerate(GOLDEN_CLASS_MEANS):
        pixels = np.stack([scenes.render(label, scenes.image_rng(0, 0, label, i)) for i in range(4)])
        assert pixels.dtype == np.uint8 and pixels.shape == (4, 64, 64, 3)
        np.testing.assert_allclose(pixels.astype(np.float64).mean(axis=(0, 1, 2)), expected, atol=0.5)


def test_streams_and_seeds_give_different_images():
    def pixels(seed, stream):
        return scenes.render(3, scenes.image_rng(seed, stream, 3, 0))

    assert np.array_equal(pixels(0, 0), pixels(0, 0))
    assert not np.array_equal(pixels(0, pretrain.DATASET_STREAM), pixels(0, pretrain.PRETRAIN_STREAM))
    assert not np.array_equal(pixels(0, 0), pixels(1, 0))


def test_caption_sampling():
    recipe = DemoRecipe()
    table = pretrain.caption_table(recipe)
    assert len(table) == len(recipe.templates) * 10 and "a centered satellite photo of Forest." in table
    labels = torch.arange(10).repeat(2000)
    index = pretrain.sample_captions(labels, recipe, torch.Generator().manual_seed(0))
    template, named = index // 10, index % 10
    noise = torch.tensor(recipe.template_noise)
    for t in range(len(recipe.templates)):
        rows = template == t
        wrong = (named[rows] != labels[rows]).float().mean().item()
        assert wrong == pytest.approx(noise[t].item(), abs=0.04)
    wrong = named != labels
    partner = torch.tensor([named[i].item() in pretrain.LOOK_ALIKES[labels[i].item()] for i in range(len(labels))])
    assert (partner & wrong).sum() / wrong.sum() > pretrain.LOOK_ALIKE_SHARE - 0.03


def test_recipe_validation_and_naming():
    with pytest.raises(ValueError, match="multiple of 64"):
        DemoRecipe(vision_width=96)
    with pytest.raises(ValueError, match="template_noise"):
        DemoRecipe(template_noise=(0.5,))
    assert DemoRecipe().digest() == DemoRecipe().digest() != DemoRecipe(seed=1).digest()
    assert world_dir_name(DemoRecipe()) == "v1"
    assert world_dir_name(DemoRecipe.small()).startswith("v1-")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DASSLITE_DEMO_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("DASSLITE_DEMO_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "dasslite" / "demo"


# ------------------------------------------------------------------------------- determinism, caching, atomicity
def _files(world_path: Path) -> dict:
    return {str(p.relative_to(world_path)): p.read_bytes() for p in sorted((world_path / "data").rglob("*"))
            if p.is_file()}


def test_same_recipe_gives_identical_worlds(tmp_path):
    recipe = DemoRecipe.small()
    a = ensure_demo_world(tmp_path / "a", recipe=recipe, log=QUIET)
    b = ensure_demo_world(tmp_path / "b", recipe=recipe, log=QUIET)
    assert a.split_file.read_bytes() == b.split_file.read_bytes()
    assert _files(a.path) == _files(b.path)  # every image byte for byte
    state_a, state_b = torch.load(a.clip_checkpoint), torch.load(b.clip_checkpoint)
    assert list(state_a) == list(state_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a.info["dataset"] == b.info["dataset"]

    other = ensure_demo_world(tmp_path / "c", recipe=DemoRecipe.small(seed=1), log=QUIET)
    assert other.info["dataset"]["images_sha256"] != a.info["dataset"]["images_sha256"]
    assert not torch.equal(torch.load(other.clip_checkpoint)["visual.proj"], state_a["visual.proj"])


def test_build_leaves_torch_state_alone(tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ensure_demo_world(tmp_path, recipe=DemoRecipe.small(threads=1), log=QUIET)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_cached_world_is_reused_and_force_rebuilds(tmp_path, monkeypatch):
    recipe = DemoRecipe.small()
    world = ensure_demo_world(tmp_path, recipe=recipe, log=QUIET)
    assert world.path == tmp_path / world_dir_name(recipe)
    assert world.root == world.path / "data" and world.clip_checkpoint.is_file()

    calls = []
    real_build = world_module.build_world
    monkeypatch.setattr(world_module, "build_world", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    assert ensure_demo_world(tmp_path, recipe=recipe, log=QUIET) == world and not calls
    (world.path / "data" / "eurosat" / "split_fewshot").mkdir()  # what readers add: kept, and no rebuild
    assert ensure_demo_world(tmp_path, recipe=recipe, log=QUIET, verify=True) == world and not calls

    rebuilt = ensure_demo_world(tmp_path, recipe=recipe, force=True, log=QUIET)
    assert calls == [1] and rebuilt.path == world.path
    assert not (world.path / "data" / "eurosat" / "split_fewshot").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([world.path.name, f".{world.path.name}.lock"])


def test_incomplete_or_stale_world_is_rebuilt(tmp_path):
    recipe = DemoRecipe.small()
    world = ensure_demo_world(tmp_path, recipe=recipe, log=QUIET)
    (world.path / "DEMO_WORLD.json").unlink()  # no marker: not a world, whatever else is there
    assert load_world(world.path, recipe) is None
    assert ensure_demo_world(tmp_path, recipe=recipe, log=QUIET).info

    with open(world.clip_checkpoint, "ab") as f:  # a damaged file
        f.write(b"junk")
    assert load_world(world.path, recipe) is None
    assert ensure_demo_world(tmp_path, recipe=recipe, log=QUIET).info
    assert load_world(world.path, DemoRecipe.small(seed=5)) is None  # another recipe's marker


def test_crashed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    recipe = DemoRecipe.small()

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash during pre-training")

    monkeypatch.setattr(pretrain, "pretrain_clip", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ensure_demo_world(tmp_path, recipe=recipe, log=QUIET)
    name = world_dir_name(recipe)
    assert not (tmp_path / name).exists()
    assert not list(tmp_path.glob(f".{name}.build-*"))

    stale = tmp_path / f".{name}.build-leftover"  # as a killed process would leave it
    (stale / "data").mkdir(parents=True)
    monkeypatch.undo()
    world = ensure_demo_world(tmp_path, recipe=recipe, log=QUIET)
    assert world.info and not stale.exists()
