"""Runs that would look finished but are not: each is an error naming the key or flag, and writes no results.json."""
import os

import pytest
import torch

from dasslite import sweep as S
from dasslite.clip.load import CheckpointFormatError, load_clip_file
from dasslite.clip.tiny import build_tiny_clip, save_state_dict
from dasslite.run_guards import RunRequestError
from tests.trainer_harness import run_train


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_zero_or_negative_epochs_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path, epochs):
    out = str(tmp_path / "run")
    with pytest.raises(RunRequestError, match=f"OPTIM.MAX_EPOCH is {epochs}: a run must train at least 1 epoch"):
        run_train(eurosat_root, tiny_clip_checkpoint, out, extra=["OPTIM.MAX_EPOCH", epochs])
    assert not os.path.exists(os.path.join(out, "results.json"))


def test_eval_only_without_model_dir_is_an_error_for_a_trainer_that_learns(eurosat_root, tiny_clip_checkpoint,
                                                                             tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(RunRequestError, match=r"--eval-only without --model-dir would evaluate the untrained "
                                              r"prompt_learner of CoOp"):
        run_train(eurosat_root, tiny_clip_checkpoint, out, flags=["--eval-only"], extra=["DATASET.NUM_SHOTS", "2"])
    assert not os.path.exists(os.path.join(out, "results.json"))


def test_zero_shots_is_an_error(eurosat_root, tiny_clip_checkpoint, tmp_path):
    with pytest.raises(RunRequestError, match=r"DATASET.NUM_SHOTS is 0"):
        run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "run"), extra=["DATASET.NUM_SHOTS", "0"])
    with pytest.raises(S.SweepUsageError, match=r"--shots / SHOTS must be at least 1, got 0"):
        S.parse_args(["base2new", "--dataset", "demo", "--shots", "0"])


@pytest.mark.parametrize("gpus", ["abc", "0,x1", "cuda:0"])
def test_gpu_ids_that_cuda_would_ignore_are_an_error(gpus):
    with pytest.raises(S.SweepUsageError, match=r"is not a GPU index"):
        S.parse_gpus(gpus)
    assert S.parse_gpus("0, 1") == ["0", "1"] and S.parse_gpus("GPU-5d2f") == ["GPU-5d2f"]


def test_clip_state_dict_missing_a_text_block_is_an_error(tmp_path):
    model = build_tiny_clip(transformer_layers=3)
    path = save_state_dict(model, tmp_path / "clip.pt")
    assert len(load_clip_file(path).transformer.resblocks) == 3
    state = torch.load(path, weights_only=True)
    damaged = {k: v for k, v in state.items() if not k.startswith("transformer.resblocks.1.")}
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointFormatError, match=r"block transformer\.resblocks\.1 is missing"):
        load_clip_file(tmp_path / "damaged.pt")
    partial = {k: v for k, v in state.items() if k != "transformer.resblocks.2.mlp.c_fc.weight"}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CheckpointFormatError, match=r"transformer\.resblocks\.2 lacks mlp\.c_fc\.weight"):
        load_clip_file(tmp_path / "partial.pt")


def test_untrained_evaluation_on_purpose_is_recorded(eurosat_root, tiny_clip_checkpoint, tmp_path):
    record = run_train(eurosat_root, tiny_clip_checkpoint, str(tmp_path / "run"), flags=["--eval-only", "--untrained"],
                       extra=["DATASET.NUM_SHOTS", "2"])
    assert record["complete"] and record["untrained"] is True and record["eval_only"]
