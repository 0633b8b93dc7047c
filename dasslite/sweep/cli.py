"""Protocol sweeps behind ``scripts/``: plan the train.py runs of a protocol, run them, print the table.

    python -m dasslite.sweep base2new --trainer T --dataset D [--shots 16] [COMMON] [-- KEY VALUE ...]
    python -m dasslite.sweep fewshot  --trainer T --dataset D [--shots 1 2 4 8 16] [COMMON] [-- KEY VALUE ...]
    python -m dasslite.sweep xd       --trainer T [--source imagenet] [--targets D ...] [--shots 16] [COMMON] [-- ...]
    python -m dasslite.sweep dg       --trainer T [--source imagenet] [--targets D ...] [--shots 16] [COMMON] [-- ...]
    python -m dasslite.sweep osr      --trainer T --dataset D [--shots 16] [--splits 0 1 2 3 4] [--balance none]
                                      [COMMON] [-- ...]   (open-set recognition: see dasslite.sweep.osr)
    COMMON: [--seeds 1 2 3] [--cfg C] [--config-file F] [--data DATA] [--output output] [--load-epoch E]
            [--gpus 0,1] [--dry-run] [--zero-shot] [--ci95] [--no-feature-cache]   (fewshot has no --load-epoch:
            it evaluates nothing after training)
    D may be ``all`` (the eleven datasets) or a list ``a,b`` for base2new and fewshot: every dataset's runs in one
    plan and one pool, longest first, with a progress line and one table (``dasslite.sweep.multi``).

Every protocol loops over the seeds; ``<T>`` is the trainer, ``<cfg>`` the recipe, ``<K>`` the shots:

base2new (CoCoOp's protocol, CoOp's folder layout), for each seed S:
  1. train on the base classes into  ``<output>/base2new/train_base/<ds>/shots_<K>/<T>/<cfg>/seed<S>``
     (opts ``DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES base``);
  2. ``--eval-only`` on the new classes from that model dir into ``<output>/base2new/test_new/...``
     (``DATASET.SUBSAMPLE_CLASSES new``; the latest checkpoint unless ``--load-epoch``).
fewshot (CoOp's few-shot curves), for each K in ``--shots`` (default 1 2 4 8 16) and seed S: train on all classes
  into ``<output>/fewshot/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` (``DATASET.SUBSAMPLE_CLASSES all``); the test after
  training is the result.
xd (cross-dataset) and dg (domain generalisation), for each seed S:
  1. train once on the source (``--source``, default imagenet; 16 shots, all classes) into
     ``<output>/transfer/train/<source>/shots_<K>/<T>/<cfg>/seed<S>``, shared by xd and dg (whichever runs second
     finds it done; a run in the older ``<output>/<xd|dg>/train/...`` folder is used where it exists); its own test
     is the "source" column;
  2. ``--eval-only --model-dir <that folder>`` on each target into ``<output>/<xd|dg>/test/<target>/shots_<K>/...``,
     each after its training. Targets (``--targets``): xd the other ten of the eleven datasets, dg imagenetv2
     imagenet_sketch imagenet_a imagenet_r. ``<cfg>`` is the source's recipe. Trainers listed in
     ``SOURCE_BOUND_OPTS`` get ``<KEY> <source DATASET.NAME>`` on every target evaluation (MoCoOp:
     ``TRAINER.MOCOOP.TEMPLATE_GROUPS ImageNet``: the model keeps the experts it was trained with).
     ``demo`` is refused as a source or target: the demo world holds a single dataset.
Zero-shot trainers (ZeroshotCLIP, ZeroshotCLIP2, or ``--zero-shot``) train nothing: every step above is an
``--eval-only`` run without a model dir, with no dependencies. ``--zero-shot`` on a trainer that trains (``--trainer
CoOp --zero-shot``) writes into ``<cfg>_zeroshot`` folders, never into the folders of that trainer's trained runs.
Then the protocol's table over those seeds is printed (``dasslite.results``).

Recipes: ``--cfg`` (or ``CFG`` in the scripts) names one in ``configs/trainers/<T>/``. Without it the recipe comes from
:func:`default_cfg`: ``demo`` for the demo dataset, else ``RECIPES[T][dataset]`` (the per-dataset recipes the LASP
and MoCoOp authors ran), else ``DEFAULT_CFGS[T]``. xd/dg look up the source dataset. ``--config-file F`` runs the
recipe file F instead; the ``<cfg>`` folder is then ``--cfg`` if given, else F's name without ``.yaml``.
``--trainer`` must be a known trainer (``DEFAULT_CFGS`` or a folder in ``configs/trainers/``); with ``--config-file``
any name that is not a near miss of a known one is accepted (a trainer of your own, see ``--train-py``).

Re-running is safe:
  * a run whose ``results.json`` is complete is skipped ("Results exist in DIR (complete); skipping");
    if that record names another trainer, dataset, seed, subsample, shot count, eval-only mode, model dir, recipe
    file (compared by file name: ``config_file``) or, for evaluations when ``--load-epoch`` is given, another
    ``load_epoch``, the sweep stops instead of reusing it (without ``--load-epoch`` any recorded epoch is accepted);
  * an existing folder without a complete ``results.json`` is re-run *into the same folder*: train.py resumes
    from the last checkpoint there (Dassl semantics) and an evaluation is simply repeated. Nothing is deleted;
  * a train.py that fails (non-zero exit, or exit 0 without a complete results.json) stops the sweep with an
    error naming the run folder and its log.txt; the sweep exits non-zero. Re-run the same command to continue.

``--phase P ...`` runs only those phases (an evaluation whose training is left out needs it finished) and
``--layout PHASE=TEMPLATE`` writes a phase's runs where the lineage's own scripts did (``dasslite.sweep.layout``);
either way the table is not printed (``parse_test_res.py`` on the folders reads the seeds).

Extra ``KEY VALUE`` opts after ``--`` go to every run. They do not change the folder names, so a finished run
made with other opts is still skipped: use a different ``--output`` (or ``--cfg``) for a variant.

Dataset ``demo`` uses the offline demo world (``dasslite.demo.ensure_demo_world()``): its root is the data root,
``MODEL.BACKBONE.NAME`` is set to its tiny CLIP, and ``--cfg`` defaults to ``demo``. Real datasets read
``configs/datasets/<ds>.yaml`` and ``--data`` (default: ``$DATA``).

Jobs: the plan is a list of :class:`Job` (the argv, the output dir, dependencies); a runner executes it.
``SequentialRunner`` runs one job at a time with the console attached. With ``--gpus 0,1,2,3`` (or ``GPUS=...``)
and more than one id, ``GpuPoolRunner`` runs one job per GPU (``CUDA_VISIBLE_DEVICES``), queueing the rest and
starting an evaluation only after its training succeeded; each job's console goes to ``<run dir>/console.txt``.
A GPU id may appear once. If the pool stops on an error (or Ctrl-C), the jobs it started are terminated.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from dasslite.recipes import (DEFAULT_CFGS, DG_TARGETS, FEWSHOT_SHOTS, RECIPES, TRANSFER_SOURCE, XD_DATASETS,
                              ZERO_SHOT_TRAINERS)
from dasslite.results.cli import parse_int_list
from dasslite.results.paper import load_paper
from dasslite.results.runs import NoResultsError
from dasslite.sweep import multi
from dasslite.sweep import osr as osr_protocol
from dasslite.sweep.jobs import SweepError, SweepUsageError
from dasslite.sweep.resolve import resolve_spec
from dasslite.sweep.run import launcher_of, run_sweep, slurm_runner
from dasslite.sweep.runners import make_runner, parse_gpus
from dasslite.sweep.signals import TerminatedError
from dasslite.sweep.slurm import SlurmError, add_slurm_args


def _int_list(values: Sequence[str], what: str, minimum: int) -> List[int]:
    """``["1", "2,3"]`` -> ``[1, 2, 3]`` (``parse_int_list``); SweepUsageError naming ``what``."""
    try:
        return parse_int_list(values, what, minimum)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None


def _add_common_args(p: argparse.ArgumentParser, evaluates: bool = True) -> None:
    recipes = "; ".join(f"{t}: per dataset, see dasslite.recipes.RECIPES" if t in RECIPES else f"{t}: {c}"
                        for t, c in DEFAULT_CFGS.items())
    p.add_argument("--trainer", default="CoOp", help="trainer name (default: %(default)s)")
    p.add_argument("--cfg", default=None, help=f"recipe in configs/trainers/<trainer>/ (default: demo for the demo "
                                               f"dataset, else {recipes})")
    p.add_argument("--config-file", default=None, help="explicit trainer config path (overrides --cfg's lookup); "
                                                       "the output folder is --cfg if given, else the file's name "
                                                       "without .yaml")
    p.add_argument("--seeds", nargs="+", default=["1", "2", "3"], help="seeds (default: 1 2 3; '1,2' works too)")
    p.add_argument("--data", default=None, help="dataset root (default: $DATA; not needed for demo)")
    p.add_argument("--output", default="output", help="output root (default: %(default)s)")
    if evaluates:
        p.add_argument("--load-epoch", type=int, default=None,
                       help="checkpoint epoch the evaluations load (default: the latest)")
    p.add_argument("--zero-shot", action="store_true",
                   help="treat the trainer as zero-shot (eval-only runs, nothing trained; a trainer that trains "
                        "writes them into <cfg>_zeroshot folders); implied for " + ", ".join(ZERO_SHOT_TRAINERS))
    p.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1,2,3: one job per GPU (default: $GPUS)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    p.add_argument("--no-feature-cache", action="store_true",
                   help="every run encodes its evaluation images (passes FEATURE_CACHE.ENABLED False)")
    p.add_argument("--ci95", action="store_true", help="the final table shows 95%% CIs instead of std")
    p.add_argument("--paper", action="store_true", help="the final table puts the published numbers beside ours")
    p.add_argument("--repo-root", default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-py", default=None, help="train.py to run (default: the repository's)")
    p.add_argument("--python", default=None, help=argparse.SUPPRESS)
    add_slurm_args(p)
    p.add_argument("--phase", nargs="+", default=None, help="run only these phases (base2new: train_base test_new; "
                                                            "xd/dg: train test); the table is then not printed")
    p.add_argument("--layout", action="append", default=None, metavar="PHASE=TEMPLATE",
                   help="run folders of PHASE from TEMPLATE, e.g. the lineage scripts' own layouts "
                        "(see dasslite.sweep.layout); the table is then not printed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="protocol", required=True)
    tail = "Everything after a lone '--' is passed to every train.py run as KEY VALUE opts."
    b = sub.add_parser("base2new", help="train on base classes, evaluate on new classes, print Base/New/H",
                       description=tail)
    b.add_argument("--dataset", required=True, help="dataset config name in configs/datasets/ (or 'demo'), "
                   "'all' (the 11 datasets) or a list 'a,b' (dasslite.sweep.multi)")
    b.add_argument("--shots", type=int, default=16, help="shots per base class (default: %(default)s)")
    _add_common_args(b)
    f = sub.add_parser("fewshot", help="train on all classes with 1/2/4/8/16 shots, print the few-shot curve",
                       description=tail)
    f.add_argument("--dataset", required=True, help="dataset config name in configs/datasets/ (or 'demo'), "
                   "'all' (the 11 datasets) or a list 'a,b' (dasslite.sweep.multi)")
    f.add_argument("--shots", nargs="+", default=[str(k) for k in FEWSHOT_SHOTS],
                   help="shots per class (default: %(default)s; '1,2' works too)")
    _add_common_args(f, evaluates=False)
    for name, targets, what in (("xd", "the other ten of: " + " ".join(XD_DATASETS), "cross-dataset transfer"),
                                ("dg", " ".join(DG_TARGETS), "domain generalisation")):
        t = sub.add_parser(name, help=f"{what}: train on the source, evaluate on the targets", description=tail)
        t.add_argument("--source", default=TRANSFER_SOURCE, help="dataset trained on (default: %(default)s)")
        t.add_argument("--targets", nargs="+", default=None, help=f"datasets evaluated on (default: {targets})")
        t.add_argument("--shots", type=int, default=16, help="shots per class on the source (default: %(default)s)")
        _add_common_args(t)
    o = sub.add_parser("osr", help="open-set recognition: known vs unknown classes, splits x seeds, print the table",
                       description=tail + " " + osr_protocol.__doc__.split("\n\n")[1])
    o.add_argument("--dataset", required=True, help=f"an open-set benchmark ({', '.join(osr_protocol.OSR_BENCHMARKS)}) "
                                                    f"or a dataset config name (base known, new unknown), or 'demo'")
    o.add_argument("--shots", type=int, default=16, help="shots per known class (default: %(default)s)")
    o.add_argument("--splits", nargs="+", default=None, help="benchmark splits (default: 0 1 2 3 4)")
    o.add_argument("--balance", default="none", help="OSR.BALANCE: none (default), with_replacement, dedup")
    _add_common_args(o)
    return parser


def parse_args(argv: Sequence[str]):
    argv = list(argv)
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    args.extra_opts = extra
    args.seeds = _int_list(args.seeds, "seed", 0)
    if args.protocol == "fewshot":
        args.shots = _int_list(args.shots, "shot count", 1)
    elif args.shots < 1 and not (args.protocol == "osr" and args.shots == -1):  # osr: -1 = every image (FSMoE)
        raise SweepUsageError(f"--shots / SHOTS must be at least 1, got {args.shots}"
                              + (" (or -1 for every training image)" if args.protocol == "osr" else ""))
    if args.protocol == "osr" and args.splits is not None:
        args.splits = _int_list(args.splits, "split", 0)
    return args


def main(argv: Optional[Sequence[str]] = None, demo_world=None, runner=None, environ=None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if multi.is_multi(args):  # --dataset all / a list: one plan, one pool
            return multi.run_multi(args, environ=environ, demo_world=demo_world, runner=runner)
        spec = resolve_spec(args, environ=environ, demo_world=demo_world)
        if runner is None and launcher_of(args, environ) == "slurm":
            runner = slurm_runner(args, spec, environ)
        elif runner is None and not args.dry_run:
            runner = make_runner(parse_gpus(args.gpus if args.gpus is not None else environ.get("GPUS")), env=environ)
        paper = load_paper() if args.paper else None
        return run_sweep(spec, runner=runner, dry_run=args.dry_run, ci95=args.ci95, paper=paper)
    except SweepUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepError, NoResultsError, SlurmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminatedError) as exc:
        why = f" by {exc}" if isinstance(exc, TerminatedError) else ""
        print(f"\ninterrupted{why}; the running train.py jobs were stopped and waited for (named above). Re-run the "
              "same command to continue (finished runs are skipped, interrupted ones resume)", file=sys.stderr)
        return 143 if isinstance(exc, TerminatedError) else 130
