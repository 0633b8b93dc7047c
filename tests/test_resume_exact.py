"""Killed at any point and rerun, a run ends bit-identical to an uninterrupted one (CPU, same seed); a rerun with
another config is refused naming the keys; results.json says whether and where the run resumed."""
import os

import pytest
import torch

import dasslite.engine.resume as resume_mod
from dasslite.compat import BACKEND, TRAINER_REGISTRY
from dasslite.engine.resume import RESUME_FILE, ConfigChangedError
from tests.trainer_harness import run_train

pytestmark = pytest.mark.skipif(BACKEND == "dassl", reason="kills are injected into the built-in engine")

OPTS = ["OPTIM.MAX_EPOCH", "3", "DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "TRAIN.CHECKPOINT_FREQ", "0", "TRAINER.COOP.PREC", "fp32", "OPTIM.WARMUP_EPOCH", "0"]


class Killed(Exception):
    """Stands for SIGKILL: the run stops where it is, without any cleanup of its own."""


def final_state(out):
    return torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-3"), weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(eurosat_root, tiny_clip_checkpoint, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted"))
    record = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    assert record["resumed_from"] is None
    return record, final_state(out)


def assert_identical(record, out, reference):
    ref_record, ref_state = reference
    assert record["accuracy"] == ref_record["accuracy"] and record["correct"] == ref_record["correct"]
    state = final_state(out)
    assert state.keys() == ref_state.keys()
    for key in state:
        assert torch.equal(state[key], ref_state[key]), key


def train_killed_at_step(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch, kill_at_step: int) -> str:
    """A CoOp run killed at its ``kill_at_step``-th training step (2 per epoch: 20 images, batch 8, last dropped);
    returns its output folder."""
    trainer_cls = TRAINER_REGISTRY.get("CoOp")
    original = trainer_cls.forward_backward
    calls = {"n": 0}

    def forward_backward(self, batch):
        calls["n"] += 1
        if calls["n"] == kill_at_step:
            raise Killed(f"step {kill_at_step}")
        return original(self, batch)

    out = str(tmp_path / "run")
    monkeypatch.setattr(trainer_cls, "forward_backward", forward_backward)
    with pytest.raises(Killed):
        run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    monkeypatch.setattr(trainer_cls, "forward_backward", original)
    return out


@pytest.mark.parametrize("kill_at_step", [2, 3, 6],
                         ids=["epoch1-last-batch", "epoch2-first-batch", "epoch3-last-batch"])
def test_killed_mid_epoch_and_rerun_is_bit_identical(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch,
                                                     reference, kill_at_step):
    out = train_killed_at_step(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch, kill_at_step)
    assert not os.path.exists(os.path.join(out, "results.json"))
    record = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    assert_identical(record, out, reference)
    resumed_epoch = (kill_at_step - 1) // 2
    if resumed_epoch:
        assert record["resumed_from"]["epoch"] == resumed_epoch
        assert record["resumed_from"]["path"].endswith(RESUME_FILE)
    else:
        assert record["resumed_from"] is None


def test_killed_while_writing_the_resume_state_and_rerun_is_bit_identical(eurosat_root, tiny_clip_checkpoint,
                                                                          tmp_path, monkeypatch, reference):
    real_save = torch.save
    writes = {"n": 0}

    def save(obj, f, *args, **kwargs):
        if "resume_state" in str(f):
            writes["n"] += 1
            if writes["n"] == 2:  # epoch 2's state: half a file, then the process dies
                with open(f, "wb") as fh:
                    fh.write(b"PK\x03\x04 truncated")
                raise Killed("mid-write")
        return real_save(obj, f, *args, **kwargs)

    out = str(tmp_path / "run")
    monkeypatch.setattr(resume_mod.torch, "save", save)
    with pytest.raises(Killed):
        run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    monkeypatch.setattr(resume_mod.torch, "save", real_save)
    record = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    assert record["resumed_from"]["epoch"] == 1
    assert_identical(record, out, reference)


def test_unreadable_resume_state_falls_back_to_the_previous_one(eurosat_root, tiny_clip_checkpoint, tmp_path,
                                                                monkeypatch, reference, capsys):
    out = train_killed_at_step(eurosat_root, tiny_clip_checkpoint, tmp_path, monkeypatch, 6)  # in epoch 3
    path = os.path.join(out, RESUME_FILE)
    with open(path, "r+b") as f:  # e.g. a disk that filled up after the rename
        f.truncate(100)
    record = run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS)
    assert f"resume state {path} cannot be read" in capsys.readouterr().out
    assert record["resumed_from"]["epoch"] == 1
    assert_identical(record, out, reference)


def test_rerun_with_another_config_is_refused_naming_the_keys(eurosat_root, tiny_clip_checkpoint, tmp_path,
                                                              monkeypatch):
    out = str(tmp_path / "run")
    one_epoch = OPTS[:1] + ["1"] + OPTS[2:]
    run_train(eurosat_root, tiny_clip_checkpoint, out, extra=one_epoch)
    with pytest.raises(ConfigChangedError, match=r"OPTIM.MAX_EPOCH: 1 in the run folder, 3 now.*new --output-dir"):
        run_train(eurosat_root, tiny_clip_checkpoint, out, extra=OPTS + ["OPTIM.LR", "0.5"])
