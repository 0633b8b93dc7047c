"""dasslite.clip: loading both OpenAI formats, verified downloads from a real local server, tiny CLIPs, TextEncoder."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import dasslite.clip.text as text_module
from dasslite.clip.text import plan_length_buckets
from dasslite.clip import (CheckpointFormatError, ChecksumError, TextEncoder, available_backbones, build_tiny_clip,
                           download_checkpoint, embed_tokens, eot_positions, import_clip, load_clip,
                           register_backbone_url, save_jit_archive, save_state_dict, tokenize,
                           unregister_backbone_url)
from tests.clip_fixtures import publish_checkpoint, serve_directory

PROMPTS = ["a", "a photo of a dog.", "a blurry photo of a very large golden retriever on the beach.", "x y"]
RN_KW = dict(vision="rn", vision_layers=(1, 1, 1, 1), vision_width=8)


def fp16_copy(model):
    """The source model converted exactly as OpenAI's build_model converts a loaded one."""
    converted = copy.deepcopy(model)
    import_clip().model.convert_weights(converted)
    return converted.eval()


@pytest.fixture(scope="module")
def vit():
    return build_tiny_clip(seed=0)


@pytest.fixture(scope="module")
def rn():
    return build_tiny_clip(seed=1, **RN_KW)


@pytest.fixture(scope="module")
def files(tmp_path_factory, vit, rn):
    root = tmp_path_factory.mktemp("clip_files")
    return {"vit_sd": save_state_dict(vit, root / "vit_sd.pt"), "vit_jit": save_jit_archive(vit, root / "vit_jit.pt"),
            "rn_sd": save_state_dict(rn, root / "rn_sd.pt"), "rn_jit": save_jit_archive(rn, root / "rn_jit.pt")}


@pytest.fixture(autouse=True)
def no_stray_registrations():
    yield
    for name in ("tiny-test", "tiny-bad"):
        unregister_backbone_url(name)


# ---------------------------------------------------------------------------------------------------- tokenizer
def test_tokenize_and_eot_positions():
    tokens = tokenize(PROMPTS)
    assert tokens.shape == (4, 77) and tokens.dtype == torch.long
    assert tokenize("a photo").shape == (1, 77)
    eot = eot_positions(tokens)
    assert eot[0] == 2 and eot[3] == 3  # SOS a EOT / SOS x y EOT
    assert (tokens[torch.arange(4), eot] == 49407).all()
    with pytest.raises(RuntimeError, match="too long"):
        tokenize(["word " * 100])
    assert tokenize(["word " * 100], truncate=True).shape == (1, 77)


# ---------------------------------------------------------------------------------------------------- TextEncoder
@pytest.mark.parametrize("arch", ["vit", "rn"])
def test_text_encoder_equals_encode_text_fp32(arch, vit, rn):
    model = {"vit": vit, "rn": rn}[arch]
    tokens = tokenize(PROMPTS)
    encoder = TextEncoder(copy.deepcopy(model))
    with torch.no_grad():
        expected = model.encode_text(tokens)
        fast = encoder.encode_tokens(tokens)
        reference = encoder.encode_tokens(tokens, reference=True)
        untruncated = TextEncoder(model, truncate=False, freeze=False).encode_tokens(tokens)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(reference, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(untruncated, expected, atol=1e-5, rtol=0)


def test_text_encoder_fp16_weights(vit):
    half = fp16_copy(vit)
    tokens = tokenize(PROMPTS)
    encoder = TextEncoder(half)
    assert encoder.dtype == torch.float16
    with torch.no_grad():
        expected = half.encode_text(tokens)
        fast = encoder.encode_tokens(tokens)
        reference = encoder.encode_tokens(tokens, reference=True)
    assert fast.dtype == torch.float16
    torch.testing.assert_close(reference, expected, atol=0, rtol=0)
    torch.testing.assert_close(fast.float(), expected.float(), atol=5e-3, rtol=5e-3)


def test_chunked_equals_unchunked(vit):
    tokens = tokenize(PROMPTS + ["one more class name", "b"])
    encoder = TextEncoder(copy.deepcopy(vit))
    with torch.no_grad():
        whole = encoder.encode_tokens(tokens)
        encoder.chunk_size = 4
        chunked = encoder.encode_tokens(tokens)
        encoder.chunk_size = 1
        single = encoder.encode_tokens(tokens)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(single, whole, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="chunk_size"):
        TextEncoder(vit, chunk_size=0, freeze=False)


@pytest.mark.parametrize("arch", ["vit", "rn"])
def test_gradients_reach_prompts_not_clip(arch, vit, rn):
    model = copy.deepcopy({"vit": vit, "rn": rn}[arch])
    encoder = TextEncoder(model, chunk_size=2)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert sum(1 for _ in encoder.parameters()) > 0
    tokens = tokenize(PROMPTS)
    with torch.no_grad():
        base = embed_tokens(model, tokens)
    ctx = torch.nn.Parameter(base[:, 1:3].clone())  # CoOp-style learnable context at positions 1..2
    prompts = torch.cat([base[:, :1], ctx, base[:, 3:]], dim=1)
    features = encoder(prompts, tokens)
    torch.testing.assert_close(features, model.encode_text(tokens), atol=1e-5, rtol=0)
    features.pow(2).sum().backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    # the reference path gives the same gradient
    grad = ctx.grad.clone()
    ctx.grad = None
    encoder(torch.cat([base[:, :1], ctx, base[:, 3:]], dim=1), tokens, reference=True).pow(2).sum().backward()
    torch.testing.assert_close(ctx.grad, grad, atol=1e-4, rtol=1e-3)


def test_shared_prefix_encoding_equals_full_prompts(vit):
    """encode_prefixed: prompts that share their first P embeddings (SOS + a learned context) give the features and
    the gradients of encoding the concatenated prompts, chunked or not, and on the reference path."""
    model = copy.deepcopy(vit).float()
    encoder = TextEncoder(model)
    tokens = tokenize(["a photo of a dog.", "a photo of a very large golden retriever on the beach.", "a photo of a x"])
    with torch.no_grad():
        base = embed_tokens(model, tokens)
    ctx = torch.nn.Parameter(base[0, 1:5].clone())  # "a photo of a", shared by the three prompts
    suffix = torch.nn.Parameter(base[:, 5:].clone())  # e.g. a learnable word after the class name
    full = encoder(torch.cat([base[:, :1], ctx.expand(3, -1, -1), suffix], dim=1), tokens)
    torch.testing.assert_close(full, model.encode_text(tokens), atol=1e-5, rtol=0)
    full.pow(2).sum().backward()
    grads = ctx.grad.clone(), suffix.grad.clone()
    ctx.grad = suffix.grad = None
    eot = eot_positions(tokens)
    shared = encoder.encode_prefixed(torch.cat([base[0, :1], ctx]), suffix, eot)
    torch.testing.assert_close(shared, full.detach(), atol=1e-5, rtol=0)
    shared.pow(2).sum().backward()
    torch.testing.assert_close(ctx.grad, grads[0], atol=1e-4, rtol=1e-3)  # summed over rows in another order
    torch.testing.assert_close(suffix.grad, grads[1], atol=1e-4, rtol=1e-3)
    with torch.no_grad():
        encoder.chunk_size = 2
        torch.testing.assert_close(encoder.encode_prefixed(torch.cat([base[0, :1], ctx]), suffix, eot), shared)
        encoder.chunk_size, encoder.reference_path = None, True
        reference = encoder.encode_prefixed(torch.cat([base[0, :1], ctx]), suffix, eot)
    torch.testing.assert_close(reference, shared, atol=1e-5, rtol=0)
    encoder.reference_path = False
    # G prefixes (one context per image, CoCoOp): each group equals its own single-prefix call, for any chunking
    with torch.no_grad():
        other = ctx + 0.1 * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(0))
        prefixes = torch.stack([torch.cat([base[0, :1], ctx]), torch.cat([base[0, :1], other])])
        singles = torch.stack([encoder.encode_prefixed(p, suffix, eot) for p in prefixes])
        for size in (None, 1, 3, 5):
            encoder.chunk_size = size
            grouped = encoder.encode_prefixed(prefixes, suffix.unsqueeze(0).expand(2, -1, -1, -1), eot)
            torch.testing.assert_close(grouped, singles, atol=1e-5, rtol=0)
    encoder.chunk_size = None
    assert not torch.allclose(singles[0], singles[1], atol=1e-3)
    with pytest.raises(ValueError, match="inside the shared prefix"):
        encoder.encode_prefixed(base[0, :9], base[:, 9:], eot)
    with pytest.raises(ValueError, match="must be"):
        encoder.encode_prefixed(base[:, :5], base[:, 5:], eot)


def test_plan_length_buckets_hand_computed():
    """Least padded tokens (+ a cost per bucket), buckets as contiguous length ranges, fewest buckets on a tie."""
    lengths = [3, 3, 3, 10, 10, 4]
    # no cost per bucket: {3,3,3} {4} {10,10} = 9 + 4 + 20 tokens instead of 60
    assert plan_length_buckets(lengths, 4) == [[0, 1, 2], [5], [3, 4]]
    # 5 per bucket: two buckets (16 + 20 + 10 = 46) beat three (33 + 15 = 48) and one (60 + 5)
    assert plan_length_buckets(lengths, 4, overhead=5) == [[0, 1, 2, 5], [3, 4]]
    assert plan_length_buckets(lengths, 4, overhead=2, fixed=3) == [[0, 1, 2, 5], [3, 4]]
    assert plan_length_buckets(lengths, 4, overhead=40) == [[0, 1, 2, 3, 4, 5]]
    assert plan_length_buckets(lengths, 1) == [[0, 1, 2, 3, 4, 5]]
    assert plan_length_buckets([1, 2, 3, 4], 2) == [[0, 1], [2, 3]]  # 4 + 8 beats 1 + 12 and 9 + 4
    assert plan_length_buckets([5, 5], 3) == [[0, 1]]
    assert plan_length_buckets([], 3) == [[]]
    with pytest.raises(ValueError, match="max_buckets"):
        plan_length_buckets(lengths, 0)


def test_length_buckets_equal_one_padded_batch(vit, monkeypatch):
    """Encoding length buckets separately (each cut after its own last EOT) gives the features and gradients of one
    padded batch, for plain and shared-prefix prompts, one or several prefixes, chunked or not."""
    model = copy.deepcopy(vit).float()
    encoder = TextEncoder(model)
    names = ["x", "golden retriever on the beach at dawn", "dog", "a very large iron espresso maker", "hen", "b c"]
    tokens = tokenize(["a photo of a " + n + "." for n in names])
    eot = eot_positions(tokens)
    with torch.no_grad():
        base = embed_tokens(model, tokens)
    calls = []
    real = TextEncoder._encode_prefixed
    monkeypatch.setattr(TextEncoder, "_encode_prefixed",
                        lambda self, p, s, e: calls.append(int(e.max())) or real(self, p, s, e))
    # a bucket's cost is scaled by (512 / width)^2: this width-64 model does not split 6 prompts by default ...
    with torch.no_grad():
        encoder.encode_prefixed(base[0, :5], base[:, 5:], eot)
    assert len(calls) == 1
    # ... so, to test the split, buckets cost nothing here
    monkeypatch.setitem(text_module.BUCKET_OVERHEAD_TOKENS, "cpu", 0.0)
    calls.clear()

    def run(buckets, chunk, groups):
        encoder.length_buckets, encoder.chunk_size = buckets, chunk
        ctx = torch.nn.Parameter(base[0, 1:5].clone())
        suffix = torch.nn.Parameter(base[:, 5:].clone())
        plain = encoder(torch.cat([base[:, :1], ctx.expand(len(names), -1, -1), suffix], dim=1), tokens)
        shift = torch.linspace(0, 0.1, groups)[:, None, None]
        prefix = torch.cat([base[0, :1], ctx]).unsqueeze(0) + shift
        shared = encoder.encode_prefixed(prefix, suffix.unsqueeze(0).expand(groups, -1, -1, -1), eot)
        (plain.pow(2).sum() + shared.pow(3).sum()).backward()
        return plain.detach(), shared.detach(), ctx.grad, suffix.grad

    for groups in (1, 3):
        for chunk in (None, 2, 4):
            calls.clear()
            bucketed = run(4, chunk, groups)
            if chunk is None:  # (chunks are cut after their own last EOT anyway)
                assert len(set(calls)) > 1  # the buckets were cut after different last EOTs
            calls.clear()
            padded = run(1, chunk, groups)
            if chunk is None:
                assert len(set(calls)) == 1
            for got, want in zip(bucketed, padded):  # gradients: the same sums in another order
                torch.testing.assert_close(got, want, atol=1e-5 * float(want.abs().max()), rtol=1e-4)
    torch.testing.assert_close(bucketed[0], model.encode_text(tokens).detach(), atol=1e-5, rtol=0)


def test_text_encoder_input_checks(vit):
    encoder = TextEncoder(vit, freeze=False)
    tokens = tokenize(["a b"])
    with pytest.raises(ValueError, match="must be"):
        encoder(embed_tokens(vit, tokens)[:, :10], tokens)
    empty = encoder(embed_tokens(vit, tokens)[:0], tokens[:0])
    assert empty.shape == (0, 64)


# ---------------------------------------------------------------------------------------------------- tiny models
def test_build_tiny_clip_is_seeded_and_checked():
    state = torch.random.get_rng_state()
    a, b = build_tiny_clip(seed=3, transformer_layers=1, vision_layers=1), build_tiny_clip(seed=3, transformer_layers=1,
                                                                                           vision_layers=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.dtype == torch.float32 and not a.training
    with pytest.raises(ValueError, match="width // 64"):
        build_tiny_clip(transformer_width=128, transformer_heads=1)
    with pytest.raises(ValueError, match="vit"):
        build_tiny_clip(vision="swin")
    with pytest.raises(ValueError, match="int vision_layers"):
        build_tiny_clip(vision_layers=(1, 1, 1, 1))
    resnet = build_tiny_clip(vision="rn", vision_layers=1, vision_width=8, transformer_layers=1)
    assert [len(getattr(resnet.visual, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]


# ---------------------------------------------------------------------------------------------------- loading
def _assert_same_clip(loaded, source, image_size=32):
    expected = fp16_copy(source)
    assert loaded.dtype == torch.float16 and not loaded.training
    tokens = tokenize(PROMPTS)
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(tokens), expected.encode_text(tokens), atol=0, rtol=0)
        torch.testing.assert_close(loaded.encode_image(images), expected.encode_image(images), atol=0, rtol=0)


@pytest.mark.parametrize("arch", ["vit", "rn"])
@pytest.mark.parametrize("fmt", ["sd", "jit"])
def test_load_both_formats(arch, fmt, files, vit, rn):
    path = files[f"{arch}_{fmt}"]
    if fmt == "jit":
        with pytest.warns(FutureWarning):
            archive = torch.jit.load(str(path))
        assert {"input_resolution", "context_length", "vocab_size"} <= set(archive.state_dict())
    _assert_same_clip(load_clip(str(path)), {"vit": vit, "rn": rn}[arch])


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_load_wrapped_state_dict(wrapper, files, vit, tmp_path):
    state = torch.load(files["vit_sd"], weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: state, "epoch": 3}, path)
    _assert_same_clip(load_clip(str(path)), vit)


def test_load_errors_name_the_problem(files, tmp_path):
    missing = tmp_path / "nope" / "clip.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_clip(str(missing))
    with pytest.raises(ValueError, match="ViT-B/16") as info:
        load_clip("ViT-B/17")
    assert "Did you mean" in str(info.value) and "RN50x64" in str(info.value)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="garbage.pt") as info:
        load_clip(str(garbage))
    assert "torch.jit.load" in str(info.value) and "torch.load" in str(info.value)

    state = torch.load(files["vit_sd"], weights_only=True)
    del state["ln_final.weight"], state["text_projection"]
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointFormatError, match="broken.pt") as info:
        load_clip(str(broken))
    assert "ln_final.weight" in str(info.value) and "text_projection" in str(info.value)

    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointFormatError, match="visual.proj"):
        load_clip(str(other))
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointFormatError, match="list"):
        load_clip(str(listed))


def test_pkg_resources_shim_in_fresh_interpreter():
    """openai-clip imports pkg_resources; our shim stands in only during that import and leaves no trace."""
    code = textwrap.dedent("""
        import sys
        sys.modules["pkg_resources"] = None          # as if setuptools shipped none
        from dasslite.clip import import_clip, tokenize
        clip = import_clip()
        assert clip.clip.packaging.version.parse("2.0") > clip.clip.packaging.version.parse("1.7.1")
        assert sys.modules["pkg_resources"] is None  # restored
        assert tokenize(["a dog"]).shape == (1, 77)
        del sys.modules["clip"]
        for name in [m for m in sys.modules if m.startswith("clip.")]:
            del sys.modules[name]
        del sys.modules["pkg_resources"]
        import_clip()
        assert "pkg_resources" not in sys.modules    # nothing left behind
        print("ok")
    """)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------------------------------------------- download
def test_download_by_name_from_local_server(files, vit, tmp_path, monkeypatch):
    served, cache = tmp_path / "served", tmp_path / "cache"
    url_path, sha = publish_checkpoint(files["vit_jit"], served)
    with serve_directory(served) as base:
        register_backbone_url("tiny-test", base + url_path)
        assert "tiny-test" in available_backbones()
        _assert_same_clip(load_clip("tiny-test", download_root=str(cache)), vit)
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.pt"]  # no temporary file left
    # the server is gone: the verified cached copy is reused, also through $CLIP_CACHE_DIR
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    _assert_same_clip(load_clip("tiny-test"), vit)


def test_download_checksum_mismatch_keeps_nothing(files, tmp_path):
    served, cache = tmp_path / "served", tmp_path / "cache"
    url_path, sha = publish_checkpoint(files["vit_sd"], served)
    wrong = "0" * 64
    with serve_directory(served) as base:
        url = base + url_path
        with pytest.raises(ChecksumError) as info:
            download_checkpoint(url, cache, expected_sha256=wrong)
        assert url in str(info.value) and wrong in str(info.value) and sha in str(info.value)
        assert list(cache.iterdir()) == []
        bad_url = f"{base}/{wrong}/tiny.pt"  # OpenAI-style URL whose embedded hash is wrong
        (served / wrong).mkdir()
        (served / wrong / "tiny.pt").write_bytes((served / url_path.lstrip("/")).read_bytes())
        register_backbone_url("tiny-bad", bad_url)
        with pytest.raises(ChecksumError, match=bad_url):
            load_clip("tiny-bad", download_root=str(cache))
        assert list(cache.iterdir()) == []
        # a cached file with the wrong content is replaced by a verified download
        (cache / "tiny.pt").write_bytes(b"stale")
        assert download_checkpoint(url, cache).read_bytes() == (served / url_path.lstrip("/")).read_bytes()
        with pytest.raises(RuntimeError, match="404|Not Found"):
            download_checkpoint(f"{base}/{sha}/missing.pt", cache)
    with pytest.raises(ValueError, match="sha256"):
        download_checkpoint("http://127.0.0.1:9/plain/file.pt", cache)
