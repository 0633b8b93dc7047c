"""What a user coming from a CoOp-lineage fork types: the lineage's recipes, its keys (aliased or refused, never
silently ignored), unambiguous scripts; and MoCoOp's text-loss reduction, router load and correction-vector LR."""
import math
import os
import subprocess
import sys

import pytest
import torch
from yacs.config import CfgNode as CN

import trainers  # noqa: F401  (registers every trainer and config node)
from dasslite.analysis.expert_usage import ExpertUsage, load_summary
from dasslite.config.checked_merge import merge_from_list_checked
from dasslite.prompting.key_usage import default_config, resolve_foreign_keys
from dasslite.prompting.losses import grouped_text_loss, text_to_text_loss
from dasslite.prompting.routing import Routing, router_load
from tests.trainer_harness import make_trainer, one_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every recipe the lineage's READMEs and config folders name (the CoOp/CoCoOp, KgCoOp, LASP and MoCoOp releases'
# configs/trainers folders).
_LASP = ["vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b", "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
         "vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32", "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32"]
LINEAGE_RECIPES = {
    "CoOp": ["rn101", "rn101_ep50", "rn50", "rn50_ctxv1", "rn50_ep100", "rn50_ep50", "rn50_ep50_ctxv1", "rn50_val",
             "vit_b16", "vit_b16_ctxv1", "vit_b16_ep100", "vit_b16_ep100_ctxv1", "vit_b16_ep50",
             "vit_b16_ep50_ctxv1", "vit_b32", "vit_b32_ep50"],
    "CoCoOp": ["vit_b16_c16_ep10_batch1", "vit_b16_c4_ep10_batch1", "vit_b16_c4_ep10_batch1_ctxv1",
               "vit_b16_c8_ep10_batch1"],
    "KgCoOp": ["rn50_ep100", "vit_b16_ep100_ctxv1"],
    "LASP": _LASP,
    "MoCoOp": _LASP + ["vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet"],
}


@pytest.mark.parametrize("trainer", sorted(LINEAGE_RECIPES))
def test_every_lineage_recipe_exists_and_loads(trainer):
    for name in LINEAGE_RECIPES[trainer]:
        path = os.path.join(REPO, "configs", "trainers", trainer, f"{name}.yaml")
        assert os.path.isfile(path), f"{trainer} recipe {name} is missing"
        cfg = default_config()
        cfg.merge_from_file(path)  # every key is declared, with the declared type
        assert cfg.OPTIM.MAX_EPOCH > 0 and cfg.DATALOADER.TRAIN_X.BATCH_SIZE > 0


# -- scripts: an ambiguous positional is an error that shows both forms ------------------------------------------
def _script(*args, data, **env_vars):
    env = dict(os.environ, PYTHON=sys.executable, DATA=str(data), **env_vars)
    return subprocess.run(["bash", os.path.join(REPO, "scripts", *args[0].split("/")), *args[1:]], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("method", ["coop", "cocoop", "mocoop"])
def test_base2new_with_a_seed_like_shots_and_no_seeds_is_refused(method, tmp_path):
    proc = _script(f"{method}/base2new.sh", "eurosat", "1", data=tmp_path)
    assert proc.returncode == 2
    assert "ambiguous" in proc.stderr
    assert f'base2new.sh eurosat 1 "1 2 3"' in proc.stderr and "base2new.sh eurosat 16 1" in proc.stderr
    assert "train_base" not in proc.stdout  # nothing planned, nothing run


def test_base2new_unambiguous_forms_still_plan(tmp_path):
    proc = _script("coop/base2new.sh", "eurosat", "1", "1 2 3", "--dry-run", data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 shots, seeds 1 2 3" in proc.stdout
    proc = _script("coop/base2new.sh", "eurosat", "16", "1", "--dry-run", data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "16 shots, seeds 1 (" in proc.stdout
    proc = _script("coop/base2new.sh", "eurosat", "4", "--dry-run", data=tmp_path)
    assert proc.returncode == 0 and "4 shots, seeds 1 2 3" in proc.stdout


# -- keys: set keys take effect or fail ------------------------------------------------------------------------
def _cfg(**sets):
    cfg = default_config()
    for key, value in sets.items():
        node = cfg
        *path, leaf = key.split("__")
        for part in path:
            node = node[part]
        node[leaf] = value
    return cfg


def test_kgcoop_release_keys_are_aliased_onto_ours():
    cfg = _cfg(TRAINER__COOP__N_CTX=8, TRAINER__COOP__CSC=True, TRAINER__COOP__CLASS_TOKEN_POSITION="middle")
    cfg.TRAINER.COOP.W = 2.0  # a fork's train.py (KgCoOp's extend_cfg) declares it; its default there is 1.0
    cfg.TRAINER.COOP.CTX_INIT = True  # KgCoOp's bool: its hard-coded "a photo of a"
    cfg.freeze()
    notes = resolve_foreign_keys(cfg, "KGCOOP", "KgCoOp", trainers.kgcoop.KgCoOp.KEY_ALIASES)
    k = cfg.TRAINER.KGCOOP
    assert (k.N_CTX, k.CSC, k.CLASS_TOKEN_POSITION, k.W, k.CTX_INIT) == (8, True, "middle", 2.0, "a photo of a")
    assert len(notes) == 5 and cfg.is_frozen()
    # at their fork defaults (KgCoOp's train.py: W 1.0, CTX_INIT False) our recipe's values stay
    cfg = _cfg(TRAINER__KGCOOP__CTX_INIT="a photo of a")
    cfg.TRAINER.COOP.W = 1.0
    cfg.TRAINER.COOP.CTX_INIT = False
    assert resolve_foreign_keys(cfg, "KGCOOP", "KgCoOp", trainers.kgcoop.KgCoOp.KEY_ALIASES) == []
    assert (cfg.TRAINER.KGCOOP.W, cfg.TRAINER.KGCOOP.CTX_INIT) == (8.0, "a photo of a")


def test_foreign_keys_without_alias_are_errors():
    cfg = _cfg(TRAINER__COCOOP__N_CTX=8)
    with pytest.raises(ValueError, match=r"TRAINER\.COCOOP\.N_CTX is set to 8.*set TRAINER\.KGCOOP\.N_CTX instead"):
        resolve_foreign_keys(cfg, "KGCOOP", "KgCoOp", trainers.kgcoop.KgCoOp.KEY_ALIASES)
    cfg = _cfg(TRAINER__MOCOOP__TOP_K=3)
    with pytest.raises(ValueError, match=r"TRAINER\.MOCOOP\.TOP_K.*the CoOp trainer reads only TRAINER\.COOP"):
        resolve_foreign_keys(cfg, "COOP", "CoOp", {})
    cfg = _cfg(TRAINER__COOP__N_CTX=8, TRAINER__KGCOOP__N_CTX=4)  # a recipe's 4, the release's opt 8: the opt wins
    notes = resolve_foreign_keys(cfg, "KGCOOP", "KgCoOp", trainers.kgcoop.KgCoOp.KEY_ALIASES)
    assert cfg.TRAINER.KGCOOP.N_CTX == 8 and "replacing 4" in notes[0]
    # a key our engine does not declare names the key to use
    with pytest.raises(KeyError, match=r"TRAINER\.COOP\.W.*use TRAINER\.KGCOOP\.W"):
        merge_from_list_checked(default_config(), ["TRAINER.COOP.W", "8.0"])


def test_kgcoop_trainer_takes_the_release_keys(eurosat_root, tiny_clip_checkpoint, tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer="KgCoOp", config="vit_b16_ep100_ctxv1",
                      extra=["TRAINER.KGCOOP.PREC", "fp32", "TRAINER.KGCOOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "8",
                             "TRAINER.COOP.CSC", "True"])
    ctx = tr.model.prompt_learner.ctx
    assert ctx.shape[:2] == (tr.model.prompt_learner.n_cls, 8)


@pytest.mark.parametrize("trainer,node,key,value,message", [
    ("MoCoOp", "MOCOOP", "ROUTER_HIDDEN", 64, "only with ROUTER mlp"),
    ("LASP", "LASP", "GROUPS_FILE", "mine.json", "only with TEMPLATES dataset"),
])
def test_keys_that_cannot_take_effect_are_refused(trainer, node, key, value, message):
    cfg = _cfg(**{f"TRAINER__{node}__{key}": value})
    tr_cls = getattr(trainers, trainer.lower()).__dict__[trainer]
    with pytest.raises(ValueError, match=rf"TRAINER\.{node}\.{key}.*{message}"):
        tr_cls.check_cfg(tr_cls.__new__(tr_cls), cfg)


def test_n_ctx_against_ctx_init_is_refused_when_it_would_be_ignored():
    from dasslite.prompting.key_usage import check_context_length

    cfg = _cfg(TRAINER__KGCOOP__N_CTX=8, TRAINER__KGCOOP__CTX_INIT="a photo of a")
    with pytest.raises(ValueError, match=r'N_CTX is 8 but .*CTX_INIT "a photo of a" sets .* 4 tokens'):
        check_context_length(cfg, "KGCOOP")
    check_context_length(_cfg(TRAINER__KGCOOP__N_CTX=4, TRAINER__KGCOOP__CTX_INIT="a photo of a"), "KGCOOP")
    check_context_length(_cfg(TRAINER__COOP__CTX_INIT="a photo of a"), "COOP")  # N_CTX at its default: fine
    check_context_length(_cfg(TRAINER__COOP__N_CTX=8), "COOP")


class _Tracked(CN):
    """A config node that records which of its keys were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "read", set())

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


TRAINER_CASES = [("CoOp", "vit_b16_ep50", []), ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", []),
                 ("KgCoOp", "vit_b16_ep100_ctxv1", []), ("LASP", _LASP[1], []),
                 ("MoCoOp", _LASP[1], ["DATALOADER.TRAIN_X.BATCH_SIZE", "8"]), ("ZeroshotCLIP", "vit_b16", [])]


@pytest.mark.parametrize("trainer,config,extra", TRAINER_CASES)
def test_every_declared_key_of_a_trainer_is_read(trainer, config, extra, eurosat_root, tiny_clip_checkpoint, tmp_path):
    """Build, one training step and a test evaluation read every TRAINER.<NODE> key the trainer declares."""
    import train
    from dasslite.compat import build_trainer

    module = "zsclip" if trainer == "ZeroshotCLIP" else trainer.lower()
    node_name = getattr(trainers, module).__dict__[trainer].CFG_NODE
    argv = ["--root", eurosat_root, "--seed", "1", "--trainer", trainer, "--dataset-config-file",
            "configs/datasets/eurosat.yaml", "--config-file", f"configs/trainers/{trainer}/{config}.yaml",
            "--output-dir", str(tmp_path), "MODEL.BACKBONE.NAME", tiny_clip_checkpoint, "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "2", f"TRAINER.{node_name}.PREC", "fp32", *extra]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    cfg.defrost()
    tracked = _Tracked(cfg.TRAINER[node_name])
    cfg.TRAINER[node_name] = tracked
    cfg.freeze()
    tr = build_trainer(cfg)
    if trainer != "ZeroshotCLIP":  # it trains nothing
        one_step(tr)
    tr.test()
    unread = sorted(set(tracked) - tracked.read)
    assert not unread, f"{trainer}: TRAINER.{node_name}.{unread} are declared but never read"


# -- MoCoOp: text-loss reduction, router load, correction vector LR --------------------------------------------
def test_grouped_text_loss_reductions_by_hand():
    torch.manual_seed(0)
    learned = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    protos = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    mean = text_to_text_loss(learned, protos, 1.0)
    assert grouped_text_loss(learned, protos, 1.0).item() == pytest.approx(mean.item())
    # the authors' zero-filled experts: 3 more experts with zero features give CE log(3) each, averaged over 5
    zeros = torch.zeros(3, 3, 4)
    padded = text_to_text_loss(torch.cat([learned, zeros]), torch.cat([protos, protos[:1].expand(3, -1, -1)]), 1.0)
    assert grouped_text_loss(learned, protos, 1.0, num_experts=5).item() == pytest.approx(padded.item(), rel=1e-6)
    assert padded.item() == pytest.approx((2 * mean.item() + 3 * math.log(3)) / 5, rel=1e-6)
    learned.requires_grad_(True)
    grad_all = torch.autograd.grad(grouped_text_loss(learned, protos, 1.0, num_experts=20), learned)[0]
    grad_enc = torch.autograd.grad(grouped_text_loss(learned, protos, 1.0), learned)[0]
    assert torch.allclose(grad_enc, grad_all * 10, atol=1e-7)  # 2 of 20 experts: "encoded" is 10x stronger
    with pytest.raises(ValueError, match="encoded"):
        grouped_text_loss(learned, protos, 1.0, num_experts=1)


def test_router_load_by_hand():
    # 4 images, 3 experts, top-2: expert 0 picked by every image
    indices = torch.tensor([[0, 1], [0, 2], [0, 1], [1, 0]])
    weights = torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.75, 0.25], [0.5, 0.5]])
    routing = Routing(torch.zeros(4, 3), indices, weights)
    load = router_load(routing)
    mean_weight = [(0.75 + 0.5 + 0.75 + 0.5) / 4, (0.25 + 0.25 + 0.5) / 4, 0.5 / 4]
    entropy = -sum(p * math.log(p) for p in mean_weight) / math.log(3)
    assert load["router_entropy"] == pytest.approx(entropy)
    assert load["router_busiest"] == pytest.approx(2.5 / 4) and load["router_picked"] == pytest.approx(1.0)
    assert load_summary([1.0, 0.0], [1.0, 0.0]) == {"entropy": 0.0, "busiest_expert": 0, "busiest_share": 1.0,
                                                    "busiest_picked": 1.0}
    even = load_summary([0.5, 0.5], [1.0, 1.0])
    assert even["entropy"] == pytest.approx(1.0) and even["busiest_share"] == 0.5
    usage = ExpertUsage(["a", "b"], ["e0", "e1", "e2"])
    usage.update(torch.tensor([0, 1, 0, 1]), indices, weights)
    record = usage.summary()["router_load"]
    assert record["busiest_expert"] == "e0" and record["entropy"] == pytest.approx(entropy)


def test_mocoop_logs_router_load_and_trains_the_correction_vector_at_full_lr(eurosat_root, tiny_clip_checkpoint,
                                                                            tmp_path):
    tr = make_trainer(eurosat_root, tiny_clip_checkpoint, tmp_path, trainer="MoCoOp", config=_LASP[1],
                      extra=["TRAINER.MOCOOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
                             "DATASET.NUM_SHOTS", "2", "TRAINER.MOCOOP.FINETUNE_VIT_LN", "True"])
    summary, _ = one_step(tr)
    assert 0.0 <= summary["router_entropy"] <= 1.0 and 0.0 < summary["router_busiest"] <= 1.0
    assert summary["router_busiest"] <= summary["router_picked"] <= 1.0
    vector = tr.model.prompt_learner.correction.vector
    lr_of = {id(p): g["initial_lr"] for g in tr.optim.param_groups for p in g["params"]}  # base LR (not warm-up)
    ln_weight = tr.model.prompt_learner.visual_ln[0].weight
    assert lr_of[id(vector)] == pytest.approx(tr.cfg.OPTIM.LR)
    assert lr_of[id(ln_weight)] == pytest.approx(0.1 * tr.cfg.OPTIM.LR)


# -- the lineage's own scripts: same arguments, same folders ----------------------------------------------------
def _planned_dirs(stdout):
    lines = [line for line in stdout.splitlines() if "--output-dir" in line]
    return [line.split("--output-dir ", 1)[1].split(" ", 1)[0] for line in lines]


def test_coop_main_sh_plans_coops_folders_and_opts(tmp_path):
    proc = _script("coop/main.sh", "caltech101", "rn50_ep50", "middle", "8", "2", "True", "--dry-run", data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _planned_dirs(proc.stdout) == [f"output/caltech101/CoOp/rn50_ep50_2shots/nctx8_cscTrue_ctpmiddle/"
                                          f"seed{s}" for s in (1, 2, 3)]
    assert proc.stdout.count("TRAINER.COOP.N_CTX 8 TRAINER.COOP.CSC True TRAINER.COOP.CLASS_TOKEN_POSITION middle") == 3
    assert proc.stdout.count("DATASET.NUM_SHOTS 2 DATASET.SUBSAMPLE_CLASSES all") == 3
    usage = _script("coop/main.sh", "caltech101", "rn50_ep50", data=tmp_path)
    assert usage.returncode == 2 and "Usage: bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC" in usage.stderr


def _finish(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        f.write('{"complete": true}')


def test_cocoop_xd_scripts_plan_cocoops_folders(tmp_path):
    out = tmp_path / "out"
    env_out = {"OUTPUT": str(out)}
    proc = _script("cocoop/xd_train.sh", "2", "--dry-run", data=tmp_path, **env_out)
    assert proc.returncode == 0, proc.stderr
    model = f"{out}/imagenet/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/seed2"
    assert _planned_dirs(proc.stdout) == [model]
    proc = _script("cocoop/xd_test.sh", "dtd", "2", "--dry-run", data=tmp_path, **env_out)
    assert proc.returncode == 2
    assert "no finished training" in proc.stderr and model in proc.stderr
    _finish(model)
    proc = _script("cocoop/xd_test.sh", "dtd", "2", "--dry-run", data=tmp_path, LOADEP="10", **env_out)
    assert proc.returncode == 0, proc.stderr
    assert _planned_dirs(proc.stdout) == [f"{out}/evaluation/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/dtd/seed2"]
    assert f"--eval-only --model-dir {model} --load-epoch 10" in proc.stdout


def test_cocoop_base2new_train_then_test_on_the_demo(tmp_path):
    """CoCoOp's two scripts, run as its users do (TRAINER=CoOp on the demo world: seconds)."""
    env = {"OUTPUT": str(tmp_path / "output"), "TRAINER": "CoOp", "SHOTS": "2"}
    early = _script("cocoop/base2new_test.sh", "demo", "1", data=tmp_path, **env)
    assert early.returncode == 2 and "run the training phase first" in early.stderr
    train = _script("cocoop/base2new_train.sh", "demo", "1", "--", "OPTIM.MAX_EPOCH", "1", data=tmp_path, **env)
    assert train.returncode == 0, train.stderr[-2000:]
    base = tmp_path / "output/base2new/train_base/demo/shots_2/CoOp/demo/seed1"
    assert (base / "results.json").is_file() and not (tmp_path / "output/base2new/test_new").exists()
    assert (base / "prompt_learner" / "model.pth.tar-1").is_file()  # the user's opts after -- reached train.py
    test = _script("cocoop/base2new_test.sh", "demo", "1", data=tmp_path, **env)
    assert test.returncode == 0, test.stderr[-2000:]
    new = tmp_path / "output/base2new/test_new/demo/shots_2/CoOp/demo/seed1"
    assert (new / "results.json").is_file()
    assert "parse_test_res.py" in test.stdout
