"""Errors that used to surface as raw library errors now name the file, key or value at fault and the fix."""
import os
import subprocess
import sys

import pytest
import torch

from dasslite.config import get_cfg_default, merge_from_file_checked
from dasslite.prompting.prompt_learner import ContextPromptLearner
from dasslite.run_guards import RunRequestError
from dasslite.utils.checkpoint import (CheckpointReadError, check_state_dict_compat, load_checkpoint,
                                       save_checkpoint)
from tests.trainer_harness import run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  LR: 0.002\n MAX_EPOCH: 5\n")
    with pytest.raises(ValueError, match=rf'Config file "{path}" is not valid YAML(?s:.*)line 3'):
        merge_from_file_checked(get_cfg_default(), str(path))


@pytest.mark.parametrize("key,value,pattern", [("OPTIM.LR", "-0.1", r"OPTIM.LR is -0.1: the learning rate must be"),
                                               ("DATALOADER.TRAIN_X.BATCH_SIZE", "0",
                                                r"DATALOADER.TRAIN_X.BATCH_SIZE is 0: .* set .* >= 1")])
def test_non_positive_lr_or_batch_size_is_named(eurosat_root, tiny_clip_checkpoint, tmp_path, key, value, pattern):
    with pytest.raises(RunRequestError, match=pattern):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "run"), extra=[key, value])


def test_too_long_context_names_n_ctx(clip_model):
    with pytest.raises(ValueError, match=r"prompt for class 'Sea or Lake' needs 80 tokens .* at most 71 tokens"):
        ContextPromptLearner(clip_model, ["Forest", "Sea or Lake"], n_ctx=74)
    assert ContextPromptLearner(clip_model, ["Forest", "Sea or Lake"], n_ctx=71).ctx.shape[0] == 71


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "epoch": 1}, str(tmp_path))
    with open(path, "r+b") as f:
        f.truncate(200)
    with pytest.raises(CheckpointReadError, match=rf'Checkpoint "{path}" cannot be read .* truncated or corrupt'):
        load_checkpoint(path)


def test_failed_checkpoint_write_names_the_file_and_the_disk(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r'Cannot write ".*model.pth.tar-1" .* MiB free there. Is the disk full'):
        save_checkpoint({"state_dict": {"w": torch.ones(1)}, "epoch": 1}, str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.startswith("model")]


def test_other_trainers_checkpoint_is_not_blamed_on_class_specific_context():
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"written by another trainer .* --trainer and --config-file"):
        check_state_dict_compat(module, {"ctx": torch.zeros(4, 2), "router.weight": torch.zeros(2, 2)}, "x.pth")
    with pytest.raises(ValueError, match=r"class-specific context"):
        check_state_dict_compat(module, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, "x.pth")


def test_train_py_without_torch_says_to_activate_the_environment():
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['train.py']; "
            f"runpy.run_path({os.path.join(REPO, 'train.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "lacks this project's dependencies. Activate" in proc.stderr, proc.stderr


def test_resume_from_a_truncated_checkpoint_falls_back_to_the_previous_one(eurosat_root, tiny_clip_checkpoint,
                                                                           tmp_path, capsys):
    out = tmp_path / "run"
    opts = ["OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1", "DATASET.NUM_SHOTS", "2", "TRAINER.COOP.PREC", "fp32"]
    run_train(eurosat_root, tiny_clip_checkpoint, str(out), extra=opts)
    for name in os.listdir(out):  # only Dassl's checkpoints left (e.g. a run folder written by Dassl itself)
        if name.startswith("resume_state"):
            os.remove(out / name)
    with open(out / "prompt_learner" / "model.pth.tar-2", "r+b") as f:
        f.truncate(300)
    record = run_train(eurosat_root, tiny_clip_checkpoint, str(out), extra=opts)
    printed = capsys.readouterr().out
    assert "model.pth.tar-2\" cannot be read" in printed and "from the previous checkpoint" in printed
    assert record["resumed_from"]["epoch"] == 1 and record["complete"]
