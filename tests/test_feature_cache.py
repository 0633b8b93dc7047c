"""The image-feature cache (dasslite.features): cached evaluation equals uncached to the bit for every eligible trainer,
ineligible ones never touch it, stale keys miss, corrupt entries are recomputed, concurrent writers, LRU, the CLI."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from dasslite import sweep as S
from dasslite.clip.tiny import build_tiny_clip, save_state_dict
from dasslite.features import FeatureStore
from dasslite.features import __main__ as cli
from dasslite.features import cache as C
from dasslite.features import evaluation as E
from dasslite.features import key as K
from dasslite.utils import close_logger
from tests.trainer_harness import make_trainer, run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_BATCHES = ["DATALOADER.TEST.BATCH_SIZE", "7"]  # 20 test images: batches of 7, 7 and 6
# (trainer, recipe, opts): every trainer whose image path is frozen, as the feature cache serves it
ELIGIBLE = [
    ("ZeroshotCLIP", "vit_b16", ["TRAINER.ZSCLIP.PREC", "fp32"]),
    ("CoOp", "vit_b16_ep50", ["TRAINER.COOP.PREC", "fp32"]),
    ("CoOp", "vit_b16_ep50", ["TRAINER.COOP.PREC", "bf16"]),
    ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", ["TRAINER.COCOOP.PREC", "fp32"]),
    ("KgCoOp", "vit_b16_ep100_ctxv1", ["TRAINER.KGCOOP.PREC", "fp32"]),
    ("LASP", "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
     ["TRAINER.LASP.PREC", "fp32", "TRAINER.LASP.FINETUNE_VIT_LN", "False"]),
    ("MoCoOp", "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
     ["TRAINER.MOCOOP.PREC", "fp32", "TRAINER.MOCOOP.FINETUNE_VIT_LN", "False", "TRAINER.MOCOOP.EXPERT_USAGE",
      "False"]),
]


def build(root, clip_path, out, trainer="CoOp", config="vit_b16_ep50", extra=()):
    tr = make_trainer(root, clip_path, out, trainer=trainer, config=config, extra=list(extra) + SMALL_BATCHES)
    close_logger()
    return tr


def set_cache(tr, enabled=True, **keys):
    tr.cfg.defrost()
    tr.cfg.FEATURE_CACHE.ENABLED = enabled
    for k, v in keys.items():
        tr.cfg.FEATURE_CACHE[k] = v
    tr.cfg.freeze()


def evaluate(tr, enabled=True):
    """(logits of every test image, accuracy, the feature_cache record) of one ``tr.test()``."""
    set_cache(tr, enabled)
    outs = []
    inference = type(tr).model_inference

    def recording(x):
        y = inference(tr, x)
        outs.append(y.detach().clone())
        return y

    tr.model_inference = recording
    try:
        acc = tr.test()
    finally:
        del tr.model_inference
    return torch.cat(outs), acc, tr.last_test_results["feature_cache"]


def assert_same_logits(got, ref, tr):
    """Bit-identical on CPU; on a GPU within the precision's tolerance (the encoder may not be run-to-run exact)."""
    if tr.device.type == "cpu":
        assert torch.equal(got, ref)
    else:
        tol = 1e-5 if tr.precision == "fp32" else 2e-2
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol * ref.abs().max().item())


def no_image_reads(monkeypatch):
    def refuse(path):
        raise AssertionError(f"a cached evaluation read the image {path}")

    monkeypatch.setattr("dasslite.data.data_manager.read_image", refuse)


def entries(root=None):
    return list(FeatureStore(root or os.environ["DASSLITE_FEATURE_CACHE"]).entries())


# -- equality ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trainer,config,opts", ELIGIBLE, ids=[f"{t}-{o[1]}" for t, _, o in ELIGIBLE])
def test_cached_logits_equal_uncached_to_the_bit(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch,
                                                 trainer, config, opts):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer, config, opts)
    torch.manual_seed(0)
    for p in getattr(tr.model, "prompt_learner", torch.nn.Module()).parameters():
        p.data.add_(0.05 * torch.randn_like(p))  # a trained-looking learner: logits far from the initial ones
    ref, acc_ref, off = evaluate(tr, enabled=False)
    assert off["state"] == "off" and entries() == []
    stored, acc_stored, first = evaluate(tr)
    assert first["state"] == "stored" and len(entries()) == 1
    no_image_reads(monkeypatch)
    hit, acc_hit, second = evaluate(tr)
    assert second["state"] == "hit" and second["entry"] == first["entry"]
    assert ref.shape == (20, 10)
    assert_same_logits(stored, ref, tr)
    assert_same_logits(hit, ref, tr)
    assert acc_ref == acc_stored == acc_hit
    assert tr.model.image_outputs_given is False and tr.model.image_output_hook is None  # restored


def test_results_json_records_the_cache_and_no_feature_cache_turns_it_off(eurosat_root, tiny_clip_checkpoint,
                                                                          tmp_path, capsys):
    def run(name, flags=()):
        return run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / name), trainer="ZeroshotCLIP",
                         config="vit_b16", flags=["--eval-only", *flags], extra=["TRAINER.ZSCLIP.PREC", "fp32"])

    off = run("off", ["--no-feature-cache"])
    assert off["feature_cache"]["state"] == "off" and entries() == []
    first, second = run("a"), run("b")
    assert (first["feature_cache"]["state"], second["feature_cache"]["state"]) == ("stored", "hit")
    assert off["accuracy"] == first["accuracy"] == second["accuracy"]
    assert "come from the cache" in capsys.readouterr().out


def test_sweep_passes_no_feature_cache_to_every_run(tmp_path):
    argv = ["base2new", "--trainer", "CoOp", "--dataset", "eurosat", "--data", str(tmp_path), "--no-feature-cache",
            "--cfg", "vit_b16_ep50"]
    spec = S.resolve_spec(S.parse_args(argv), environ={}, cwd=REPO)
    for job in S.plan(spec):
        assert job.argv[-2:] == ["FEATURE_CACHE.ENABLED", "False"]
    plain = S.resolve_spec(S.parse_args(argv[:-3] + argv[-2:]), environ={}, cwd=REPO)
    assert all("FEATURE_CACHE.ENABLED" not in job.argv for job in S.plan(plain))


# -- who may use it --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["lasp_vit_ln", "mocoop_vit_ln", "undeclared", "trainable_encoder"])
def test_ineligible_trainers_never_touch_the_cache(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch, case):
    if case == "lasp_vit_ln":
        tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, "LASP",
                   "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32", ["TRAINER.LASP.PREC", "fp32"])
        assert tr.cfg.TRAINER.LASP.FINETUNE_VIT_LN
    elif case == "mocoop_vit_ln":
        tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, "MoCoOp",
                   "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                   ["TRAINER.MOCOOP.PREC", "fp32", "TRAINER.MOCOOP.EXPERT_USAGE", "False"])
        assert tr.cfg.TRAINER.MOCOOP.FINETUNE_VIT_LN
    else:
        tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32"])
        if case == "undeclared":
            tr.IMAGE_PATH_FROZEN = False  # a method that does not declare its image path frozen
        else:
            tr.model.image_encoder.ln_post.weight.requires_grad_(True)  # declared, but something tunes the encoder

    def forbidden(*args, **kwargs):
        raise AssertionError("an ineligible trainer touched the feature cache")

    for name in ("get", "put", "evict"):
        monkeypatch.setattr(FeatureStore, name, forbidden)
    monkeypatch.setattr(E, "weights_digest", forbidden)
    monkeypatch.setattr(E, "build_key", forbidden)
    _, _, record = evaluate(tr)
    assert record["state"] == "not used" and record["reason"]
    assert not os.path.exists(os.environ["DASSLITE_FEATURE_CACHE"]) or entries() == []


# -- stale keys ------------------------------------------------------------------------------------------------------
@pytest.fixture
def own_world(eurosat_root, tiny_clip_checkpoint, tmp_path):
    """A private copy of the data and the CLIP file, so a test may rewrite them."""
    root, clip = tmp_path / "data", tmp_path / "clip.pt"
    shutil.copytree(eurosat_root, root)
    shutil.copyfile(tiny_clip_checkpoint, clip)
    return str(root), str(clip)


def test_changed_image_file_misses(own_world, tmp_path):
    root, clip = own_world
    tr = build(root, clip, tmp_path / "o", extra=["TRAINER.COOP.PREC", "fp32"])
    _, _, first = evaluate(tr)
    image = tr.dm.dataset.test[3].impath
    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)  # another picture under the same name
    logits, _, second = evaluate(tr)
    assert second["state"] == "stored" and second["entry"] != first["entry"]
    ref, _, _ = evaluate(tr, enabled=False)
    assert_same_logits(logits, ref, tr)
    assert evaluate(tr)[2]["state"] == "hit"


def test_changed_clip_file_misses(own_world, tmp_path):
    root, clip = own_world
    tr = build(root, clip, tmp_path / "o", extra=["TRAINER.COOP.PREC", "fp32"])
    _, _, first = evaluate(tr)
    save_state_dict(build_tiny_clip(image_resolution=32, seed=1), clip)  # other weights, same path
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # a distinct stamp even on coarse clocks
    other = build(root, clip, tmp_path / "p", extra=["TRAINER.COOP.PREC", "fp32"])
    logits, _, second = evaluate(other)
    assert second["state"] == "stored" and second["entry"] != first["entry"]
    assert_same_logits(logits, evaluate(other, enabled=False)[0], other)


@pytest.mark.parametrize("opts", [["INPUT.INTERPOLATION", "bilinear"], ["INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]"]])
def test_changed_transform_misses(eurosat_root, tiny_clip_checkpoint, tmp_path, opts):
    base = build(eurosat_root, tiny_clip_checkpoint, tmp_path / "a", extra=["TRAINER.COOP.PREC", "fp32"])
    _, _, first = evaluate(base)
    other = build(eurosat_root, tiny_clip_checkpoint, tmp_path / "b", extra=["TRAINER.COOP.PREC", "fp32", *opts])
    logits, _, second = evaluate(other)
    assert second["state"] == "stored" and second["entry"] != first["entry"]
    assert_same_logits(logits, evaluate(other, enabled=False)[0], other)


def test_clip_digest_is_hashed_once_per_file_version(tiny_clip_checkpoint, tmp_path, monkeypatch):
    clip = tmp_path / "clip.pt"
    shutil.copyfile(tiny_clip_checkpoint, clip)
    calls = []
    real = K.file_sha256
    monkeypatch.setattr(K, "file_sha256", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(K, "_MEMO", {})
    first = K.weights_digest(str(clip), str(tmp_path / "cache"))
    monkeypatch.setattr(K, "_MEMO", {})  # a new process: the index file remembers it
    assert K.weights_digest(str(clip), str(tmp_path / "cache")) == first == real(str(clip)) and len(calls) == 1
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    K.weights_digest(str(clip), str(tmp_path / "cache"))
    assert len(calls) == 2


# -- corruption, concurrency, eviction -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_entry_is_detected_and_recomputed(eurosat_root, tiny_clip_checkpoint, tmp_path, capsys, damage):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32"])
    ref, _, _ = evaluate(tr, enabled=False)
    evaluate(tr)
    (path,) = entries()
    blob = bytearray(open(path, "rb").read())
    if damage == "flip":
        blob[-5] ^= 0x10  # one bit of one stored feature
    else:
        blob = blob[: len(blob) // 2]
    open(path, "wb").write(bytes(blob))
    logits, _, record = evaluate(tr)
    assert "discarding a corrupt entry" in capsys.readouterr().out
    assert record["state"] == "stored"
    assert_same_logits(logits, ref, tr)
    assert evaluate(tr)[2]["state"] == "hit"


def test_entry_round_trip_keeps_every_bit_and_several_outputs():
    torch.manual_seed(0)
    outputs = {"layer_4": torch.randn(5, 3, 8).to(torch.bfloat16), "image_features": torch.randn(5, 8).half(),
               "empty": torch.empty(0, 4)}
    key = {"outputs": "per_layer", "n": 5}
    got_key, got = C.decode_entry(C.encode_entry(key, outputs))
    assert got_key == key and list(got) == list(outputs)
    for name, tensor in outputs.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor)


WRITER = """
import os, sys, time, torch
from dasslite.features.cache import FeatureStore
root, value, me, other = sys.argv[1:5]
store = FeatureStore(root)
key = {"outputs": "race", "n": 1}
data = {"image_features": torch.full((256, 1024), float(value))}
open(os.path.join(root, me), "w").close()
while not os.path.exists(os.path.join(root, other)):  # start together: the writes overlap
    time.sleep(0.01)
end = time.time() + 1.5
while time.time() < end:
    store.put(key, data)
    got = store.get(key)
    assert got is not None and got["image_features"].unique().numel() == 1, "a reader saw a broken entry"
"""


def test_two_concurrent_writers_never_corrupt_an_entry(tmp_path):
    root = str(tmp_path / "cache")
    os.makedirs(root)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, value, f"ready{value}", f"ready{3 - int(value)}"],
                              env=env, stderr=subprocess.PIPE) for value in ("1", "2")]
    errors = [p.communicate(timeout=180)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    (path,) = FeatureStore(root).entries()
    stored = FeatureStore(root).get({"outputs": "race", "n": 1})["image_features"]
    assert stored.shape == (256, 1024) and stored.unique().tolist() in ([1.0], [2.0])
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


def test_least_recently_used_entries_are_evicted_beyond_the_limit(tmp_path, capsys):
    store = FeatureStore(str(tmp_path), max_bytes=10 ** 9)
    data = {"image_features": torch.zeros(1000, 100)}
    paths = [store.put({"n": i}, data) for i in range(3)]
    for age, path in zip((30, 20, 10), paths):  # entry 0 is the oldest, entry 2 the newest
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - age * 10 ** 9))
    assert store.get({"n": 0}) is not None  # reading entry 0 makes entry 1 the least recently used
    store.max_bytes = int(os.path.getsize(paths[0]) * 3.5)
    store.put({"n": 3}, data)
    assert not os.path.exists(paths[1]) and all(os.path.exists(p) for p in (paths[0], paths[2]))
    assert "evicted 1 least-recently-used entry" in capsys.readouterr().out


def test_settings_come_from_the_config_then_the_environment(eurosat_root, tiny_clip_checkpoint, tmp_path,
                                                            monkeypatch):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path, extra=["TRAINER.COOP.PREC", "fp32"])
    monkeypatch.setenv("DASSLITE_FEATURE_CACHE_MAX_GB", "0.5")
    settings = E.cache_settings(tr.cfg)
    assert settings.root == os.environ["DASSLITE_FEATURE_CACHE"] and settings.max_bytes == 5 * 10 ** 8
    set_cache(tr, DIR=str(tmp_path / "mine"), MAX_GB=2.0)
    assert E.cache_settings(tr.cfg).root == str(tmp_path / "mine") and E.cache_settings(tr.cfg).max_bytes == 2e9
    evaluate(tr)
    assert len(entries(str(tmp_path / "mine"))) == 1
    monkeypatch.setenv("DASSLITE_FEATURE_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match="DASSLITE_FEATURE_CACHE_MAX_GB"):
        C.default_max_gb()


def test_cli_lists_verifies_and_clears(tmp_path, capsys):
    store = FeatureStore(str(tmp_path))
    path = store.put({"n": 1}, {"image_features": torch.ones(4, 8)}, info={"dataset": "EuroSAT", "images": 4})
    digest = os.path.basename(path)[:12]
    assert cli.main(["list", "--dir", str(tmp_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "1 entry" in out and digest in out and "EuroSAT" in out and "[ok]" in out
    with open(path, "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\xff")
    assert cli.main(["list", "--dir", str(tmp_path), "--verify"]) == 1
    assert "[CORRUPT]" in capsys.readouterr().out
    assert cli.main(["clear", "--dir", str(tmp_path)]) == 0
    assert list(store.entries()) == [] and "Cleared" in capsys.readouterr().out


def test_an_unusable_cache_folder_never_fails_the_evaluation(eurosat_root, tiny_clip_checkpoint, tmp_path, capsys):
    tr = build(eurosat_root, tiny_clip_checkpoint, tmp_path / "o", extra=["TRAINER.COOP.PREC", "fp32"])
    ref, acc, _ = evaluate(tr, enabled=False)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    set_cache(tr, DIR=str(blocker))
    logits, acc_blocked, record = evaluate(tr)
    assert record["state"] == "not used" and "not_a_folder" in record["reason"]
    assert "Feature cache: not used" in capsys.readouterr().out
    assert torch.equal(logits, ref) and acc_blocked == acc
