"""Shared fixtures: a tiny CLIP checkpoint in OpenAI's state-dict format and a tiny EuroSAT tree in the real layout."""
import pytest


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory):
    """Path to a 32-px, width-64 ViT CLIP saved as a plain OpenAI-format state dict."""
    from dasslite.clip.tiny import build_tiny_clip, save_state_dict

    path = tmp_path_factory.mktemp("clip") / "tiny_vit.pt"
    save_state_dict(build_tiny_clip(image_resolution=32, seed=0), str(path))
    return str(path)


@pytest.fixture(scope="session")
def eurosat_root(tmp_path_factory):
    """DATA root holding ``eurosat/2750/<Class>/*.jpg`` + ``split_zhou_EuroSAT.json`` (10 classes)."""
    from tests.dataset_fixtures import make_eurosat_tree

    root = tmp_path_factory.mktemp("data")
    make_eurosat_tree(str(root), n_per_class=8)
    return str(root)


@pytest.fixture(scope="session")
def clip_model(tiny_clip_checkpoint):
    """The tiny CLIP loaded as trainers load it, in fp32 (read-only: tests must not modify it)."""
    from dasslite.clip import load_clip

    return load_clip(tiny_clip_checkpoint).float()


@pytest.fixture(autouse=True)
def isolated_feature_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty image-feature cache (never ~/.cache, never another test's entries), also for
    the train.py processes it starts (they inherit the environment)."""
    monkeypatch.setenv("DASSLITE_FEATURE_CACHE", str(tmp_path_factory.mktemp("feature_cache")))
