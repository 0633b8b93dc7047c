"""Train / evaluate a prompt-learning trainer: CoOp's ``train.py`` flags and config merge order.

    python train.py --root DATA --trainer CoOp --dataset-config-file configs/datasets/eurosat.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ep50.yaml --output-dir output/x --seed 1 KEY VALUE ...
"""
import argparse
import os.path as osp
import sys
import time

try:
    import torch
except ModuleNotFoundError as _exc:  # a Python without the install, e.g. the venv not activated
    sys.exit(f"{_exc}: {sys.executable} lacks this project's dependencies. Activate its environment "
             "('. .venv/bin/activate', made by 'bash scripts/install.sh') or run .venv/bin/python train.py ...")

import datasets  # noqa: F401  (registers the dataset readers)
import trainers  # noqa: F401  (registers the trainers and their config nodes)
from dasslite.compat import BACKEND, DATASET_REGISTRY, TRAINER_REGISTRY, build_trainer, get_cfg_default
from dasslite.config import merge_from_file_checked, merge_from_list_checked
from dasslite.utils import collect_env_info, set_random_seed, setup_logger  # ours on either engine (log.txt rotation)
from dasslite.prompting.config import extend_cfg
from dasslite.run_guards import check_eval_request, check_run_request
from dasslite.utils.io import write_json_atomic
from dasslite.evaluation.open_set import run_open_set  # also declares cfg.OSR
from dasslite.utils.locks import acquire_run_lock
from dasslite.utils.registry import require_registered


def print_args(args, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args) -> None:
    """Command-line flags override the YAML files. Unlike CoOp, ``--seed 0`` is honoured (CoOp drops it)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    if getattr(args, "no_feature_cache", False):
        cfg.FEATURE_CACHE.ENABLED = False


def setup_cfg(args):
    """defaults -> extend_cfg -> dataset YAML -> trainer YAML -> flags -> opts -> freeze (CoOp's order)."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        merge_from_file_checked(cfg, args.dataset_config_file)
    if args.config_file:
        merge_from_file_checked(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_from_list_checked(cfg, args.opts)
    cfg.freeze()
    return cfg


def run_record(args, cfg, trainer) -> dict:
    """What results.json says about a finished run (read by dasslite.results and the sweeps)."""
    res = trainer.last_test_results
    return {
        "complete": True,
        "split": res["split"],
        "accuracy": res["accuracy"],
        "error_rate": res["error_rate"],
        "macro_f1": res["macro_f1"],
        **({"perclass_accuracy": res["perclass_accuracy"]} if "perclass_accuracy" in res else {}),
        "total": res["total"],
        "correct": res["correct"],
        **({"feature_cache": res["feature_cache"]} if "feature_cache" in res else {}),
        "trainer": cfg.TRAINER.NAME,
        "dataset": cfg.DATASET.NAME,
        "subsample_classes": cfg.DATASET.SUBSAMPLE_CLASSES,
        "num_shots": cfg.DATASET.NUM_SHOTS,
        "seed": cfg.SEED,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "eval_only": bool(args.eval_only),
        "untrained": bool(args.eval_only and not args.model_dir and trainer.get_model_names()),
        "model_dir": args.model_dir,
        "load_epoch": args.load_epoch,
        "max_epoch": cfg.OPTIM.MAX_EPOCH,
        "config_file": args.config_file,
        "dataset_config_file": args.dataset_config_file,
        "output_dir": cfg.OUTPUT_DIR,
        "engine": BACKEND,
        "resumed_from": getattr(trainer, "resumed_from", None),  # {"epoch", "path"} when training resumed
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(args) -> int:
    cfg = setup_cfg(args)
    require_registered(TRAINER_REGISTRY, cfg.TRAINER.NAME, "trainer")
    require_registered(DATASET_REGISTRY, cfg.DATASET.NAME, "dataset")
    check_run_request(args, cfg)
    acquire_run_lock(cfg.OUTPUT_DIR)  # before log.txt is touched: a second run on this folder stops here
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    print(f"Engine: {BACKEND}")

    trainer = build_trainer(cfg)
    trainer.last_test_results = None
    check_eval_request(args, trainer)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()

    if getattr(trainer, "last_test_results", None):
        path = write_json_atomic(osp.join(cfg.OUTPUT_DIR, "results.json"), run_record(args, cfg, trainer))
        print(f"Results written to {path}")
        if cfg.OSR.ENABLED:  # known-class test images against unknown-class ones, from the same logits
            print(f"Open-set results written to {run_open_set(trainer, run_record(args, cfg, trainer))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="encode every evaluation image (no image-feature cache; = FEATURE_CACHE.ENABLED False)")
    parser.add_argument("--untrained", action="store_true",
                        help="with --eval-only and no --model-dir: evaluate the initial prompt on purpose (recorded)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
