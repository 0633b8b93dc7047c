"""Engine semantics that do not need data or CLIP: registry, config, LR schedule, evaluator, checkpoints, logger."""
import math
import os

import pytest
import torch

from dasslite.config import get_cfg_default, merge_from_file_checked, merge_from_list_checked
from dasslite.evaluation import build_evaluator
from dasslite.metrics import compute_accuracy, macro_f1
from dasslite.optim import build_lr_scheduler, build_optimizer
from dasslite.utils import Registry, close_logger, setup_logger
from dasslite.utils.checkpoint import (check_state_dict_compat, latest_checkpoint_name, load_checkpoint,
                                       resume_from_checkpoint, save_checkpoint)
from dasslite.utils.io import write_json_atomic


# -- registry ------------------------------------------------------------------------------------------------
def test_registry_unknown_name_lists_valid_and_suggests():
    reg = Registry("TRAINER")

    @reg.register()
    class CoOp:  # noqa: D401
        pass

    @reg.register()
    class CoCoOp:
        pass

    assert reg.get("CoOp") is CoOp
    with pytest.raises(KeyError) as exc:
        reg.get("Coop")
    msg = str(exc.value)
    assert 'Did you mean "CoOp"' in msg and "CoCoOp" in msg and "CoOp" in msg


def test_registry_duplicate_name_is_an_error():
    reg = Registry("DATASET")

    def make():
        class EuroSAT:
            pass
        return EuroSAT

    reg.register(make())
    with pytest.raises(KeyError, match="already registered"):
        reg.register(make())


# -- config -------------------------------------------------------------------------------------------------
def test_defaults_match_dassl_values():
    cfg = get_cfg_default()
    assert cfg.SEED == -1 and cfg.USE_CUDA is True and cfg.OUTPUT_DIR == "./output"
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and cfg.INPUT.INTERPOLATION == "bilinear"
    assert tuple(cfg.INPUT.RRCROP_SCALE) == (0.08, 1.0)
    assert cfg.DATASET.NUM_SHOTS == -1
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
    assert cfg.DATALOADER.TRAIN_X.SAMPLER == "RandomSampler" and cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    o = cfg.OPTIM
    assert (o.NAME, o.LR, o.WEIGHT_DECAY, o.MOMENTUM, o.LR_SCHEDULER, o.MAX_EPOCH) == ("adam", 3e-4, 5e-4, 0.9, "single_step", 10)
    assert (o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR, o.WARMUP_MIN_LR, o.WARMUP_RECOUNT) == (-1, "linear", 1e-5, 1e-5, True)
    assert cfg.TRAIN.CHECKPOINT_FREQ == 0 and cfg.TRAIN.PRINT_FREQ == 10
    t = cfg.TEST
    assert (t.EVALUATOR, t.PER_CLASS_RESULT, t.COMPUTE_CMAT, t.NO_TEST, t.SPLIT, t.FINAL_MODEL) == (
        "Classification", False, False, False, "test", "last_step")
    assert get_cfg_default() is not get_cfg_default()  # a fresh clone each time


def test_unknown_key_in_file_names_file_and_suggests(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  MAX_EPOCHS: 5\n")
    cfg = get_cfg_default()
    with pytest.raises(KeyError) as exc:
        merge_from_file_checked(cfg, str(path))
    msg = str(exc.value)
    assert str(path) in msg and "OPTIM.MAX_EPOCHS" in msg and 'Did you mean "OPTIM.MAX_EPOCH"' in msg


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        merge_from_file_checked(get_cfg_default(), str(tmp_path / "nope.yaml"))


def test_opts_errors_are_clear():
    cfg = get_cfg_default()
    with pytest.raises(KeyError, match="OPTIM.LRR"):
        merge_from_list_checked(cfg, ["OPTIM.LRR", "0.1"])
    with pytest.raises(ValueError, match="odd number"):
        merge_from_list_checked(cfg, ["OPTIM.LR"])
    with pytest.raises(ValueError, match="OPTIM.MAX_EPOCH"):
        merge_from_list_checked(cfg, ["OPTIM.MAX_EPOCH", "'ten'"])
    merge_from_list_checked(cfg, ["OPTIM.LR", "0.5", "OPTIM.MAX_EPOCH", "7"])
    assert cfg.OPTIM.LR == 0.5 and cfg.OPTIM.MAX_EPOCH == 7


# -- optimizer and LR schedule -----------------------------------------------------------------------------
def _coop_optim_cfg(lr=5e-4, epochs=10, warmup="constant"):
    cfg = get_cfg_default()
    o = cfg.OPTIM
    o.NAME, o.LR, o.MAX_EPOCH, o.LR_SCHEDULER = "sgd", lr, epochs, "cosine"
    o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR, o.WARMUP_MIN_LR = 1, warmup, 1e-5, 1e-5
    return o


def _epoch_lrs(optim, sched, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()  # the trainer steps once per epoch, at the last batch
    return lrs


def test_cosine_with_constant_warmup_matches_dassl_sequence():
    o = _coop_optim_cfg()
    p = torch.nn.Parameter(torch.zeros(3))
    optim = build_optimizer([p], o)
    lrs = _epoch_lrs(optim, build_lr_scheduler(optim, o), 10)
    expected = [1e-5] + [0.5 * 5e-4 * (1 + math.cos(math.pi * (k - 2) / 10)) for k in range(2, 11)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[2] == pytest.approx(4.8776e-4, rel=1e-4)  # the value in Dassl's published logs
    assert min(lrs[1:]) > 0  # the schedule never reaches 0


def test_linear_warmup_and_single_step():
    o = _coop_optim_cfg(lr=0.1, epochs=6, warmup="linear")
    o.WARMUP_EPOCH = 3
    p = torch.nn.Parameter(torch.zeros(1))
    optim = build_optimizer([p], o)
    lrs = _epoch_lrs(optim, build_lr_scheduler(optim, o), 6)
    assert lrs[:3] == pytest.approx([1e-5, 0.1 / 3, 0.2 / 3])
    assert lrs[3] == pytest.approx(0.1)
    o2 = get_cfg_default().OPTIM
    o2.NAME, o2.LR, o2.STEPSIZE, o2.GAMMA = "sgd", 1.0, (2,), 0.1
    optim2 = build_optimizer([torch.nn.Parameter(torch.zeros(1))], o2)
    assert _epoch_lrs(optim2, build_lr_scheduler(optim2, o2), 5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])


def test_scheduler_state_round_trips_through_weights_only_checkpoint(tmp_path):
    o = _coop_optim_cfg(epochs=8)
    model = torch.nn.Linear(2, 2)
    optim = build_optimizer(model, o)
    sched = build_lr_scheduler(optim, o)
    first = _epoch_lrs(optim, sched, 3)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 3, "optimizer": optim.state_dict(),
                     "scheduler": sched.state_dict(), "val_result": None}, str(tmp_path / "m"))
    torch.load(tmp_path / "m" / "model.pth.tar-3", weights_only=True)  # no pickled objects inside
    rest_uninterrupted = _epoch_lrs(optim, sched, 5)

    model2 = torch.nn.Linear(2, 2)
    optim2 = build_optimizer(model2, o)
    sched2 = build_lr_scheduler(optim2, o)
    assert resume_from_checkpoint(str(tmp_path / "m"), model2, optim2, sched2) == 3
    assert _epoch_lrs(optim2, sched2, 5) == pytest.approx(rest_uninterrupted)
    assert first[0] == pytest.approx(1e-5)


def test_unknown_optimizer_and_scheduler_are_named():
    o = get_cfg_default().OPTIM
    o.NAME = "lion"
    with pytest.raises(ValueError, match="lion"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], o)
    o.NAME, o.LR_SCHEDULER = "sgd", "poly"
    optim = build_optimizer([torch.nn.Parameter(torch.zeros(1))], o)
    with pytest.raises(ValueError, match="poly"):
        build_lr_scheduler(optim, o)


def test_staged_lr_groups():
    o = get_cfg_default().OPTIM
    o.NAME, o.LR, o.STAGED_LR, o.NEW_LAYERS, o.BASE_LR_MULT = "sgd", 0.1, True, ("head",), 0.1
    model = torch.nn.Module()
    model.backbone, model.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optim = build_optimizer(model, o)
    lrs = sorted(g["lr"] for g in optim.param_groups)
    assert lrs == pytest.approx([0.01, 0.1])


# -- evaluator and metrics ---------------------------------------------------------------------------------
def test_classification_evaluator_prints_dassl_block(capsys):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    ev = build_evaluator(cfg, lab2cname={0: "cat", 1: "dog", 2: "eel"})
    # predictions: labels [0,0,1,1,2,2] -> preds [0,1,1,1,0,2]
    logits = torch.eye(3)[[0, 1, 1, 1, 0, 2]]
    ev.process(logits[:3], torch.tensor([0, 0, 1]))
    ev.process(logits[3:], torch.tensor([1, 2, 2]))
    res = ev.evaluate()
    out = capsys.readouterr().out
    # per class F1: c0: tp1 fp1 fn1 -> 0.5; c1: tp2 fp1 fn0 -> 0.8; c2: tp1 fp0 fn1 -> 2/3
    f1 = 100 * (0.5 + 0.8 + 2 / 3) / 3
    assert res["accuracy"] == pytest.approx(400 / 6) and res["error_rate"] == pytest.approx(200 / 6)
    assert res["macro_f1"] == pytest.approx(f1)
    assert list(res)[:3] == ["accuracy", "error_rate", "macro_f1"]
    assert "=> result\n* total: 6\n* correct: 4\n* accuracy: 66.7%\n* error: 33.3%\n* macro_f1: 65.6%" in out
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 2\tacc: 100.0%" in out
    assert res["perclass_accuracy"] == pytest.approx(100 * (0.5 + 1 + 0.5) / 3)


def test_macro_f1_ignores_labels_only_predicted():
    assert macro_f1([0, 0], [0, 1]) == pytest.approx(2 / 3)  # only label 0 counts: p=1, r=0.5


def test_compute_accuracy_topk():
    out = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05]])
    top1, top2 = compute_accuracy(out, torch.tensor([1, 1]), topk=(1, 2))
    assert top1.item() == pytest.approx(50.0) and top2.item() == pytest.approx(100.0)


# -- checkpoints and files ---------------------------------------------------------------------------------
def test_checkpoint_layout_and_pointer(tmp_path):
    state = {"state_dict": {"module.ctx": torch.ones(2)}, "epoch": 5, "optimizer": None, "scheduler": None,
             "val_result": None}
    save_checkpoint(state, str(tmp_path), is_best=True)
    assert (tmp_path / "model.pth.tar-5").is_file() and (tmp_path / "model-best.pth.tar").is_file()
    assert latest_checkpoint_name(str(tmp_path)) == "model.pth.tar-5"
    loaded = load_checkpoint(str(tmp_path / "model.pth.tar-5"))
    assert list(loaded["state_dict"]) == ["ctx"]  # "module." prefixes stripped
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="model.pth.tar-9"):
        load_checkpoint(str(tmp_path / "model.pth.tar-9"))


def test_state_dict_compat_refuses_partial_or_misshaped_loads():
    module = torch.nn.Module()
    module.ctx = torch.nn.Parameter(torch.zeros(4, 8))
    module.register_buffer("token_prefix", torch.zeros(3, 1, 8))
    check_state_dict_compat(module, {"ctx": torch.zeros(4, 8)}, source="x", ignore=("token_prefix",))
    with pytest.raises(ValueError, match=r"ctx: checkpoint \(10, 4, 8\) vs model \(4, 8\)"):
        check_state_dict_compat(module, {"ctx": torch.zeros(10, 4, 8)}, source="ckpt", ignore=("token_prefix",))
    with pytest.raises(ValueError, match="missing keys"):
        check_state_dict_compat(module, {}, source="ckpt", ignore=("token_prefix",))
    with pytest.raises(ValueError, match="unexpected keys"):
        check_state_dict_compat(module, {"ctx": torch.zeros(4, 8), "meta": torch.zeros(1)}, source="ckpt",
                                ignore=("token_prefix",))


def test_logger_tees_and_keeps_previous_log(tmp_path, capsys):
    setup_logger(str(tmp_path))
    print("first run")
    close_logger()
    setup_logger(str(tmp_path))
    print("second run")
    close_logger()
    assert (tmp_path / "log.txt").read_text() == "second run\n"
    rotated = [p for p in os.listdir(tmp_path) if p.startswith("log.txt-")]
    assert len(rotated) == 1 and (tmp_path / rotated[0]).read_text() == "first run\n"


def test_write_json_atomic_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(str(path), {"accuracy": 1.0})
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"bad": object()})
    assert path.read_text().strip().startswith("{") and '"accuracy": 1.0' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_bytes_and_text_atomic(tmp_path):
    """The byte and text writers replace a file whole, create its folder, and leave no temporary file."""
    from dasslite.utils.io import write_bytes_atomic, write_text_atomic
    path = tmp_path / "sub" / "table.md"
    assert write_text_atomic(str(path), "Δcos ± 1\n") == str(path)
    assert path.read_bytes() == "Δcos ± 1\n".encode("utf-8")
    write_bytes_atomic(str(path), b"\x89PNG")
    assert path.read_bytes() == b"\x89PNG" and [p.name for p in path.parent.iterdir()] == ["table.md"]
