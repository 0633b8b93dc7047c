"""Protocol sweeps behind ``scripts/``: plan the train.py runs of a protocol, run them, print the table.

    python -m dasslite.sweep base2new --trainer T --dataset D [--shots 16] [COMMON] [-- KEY VALUE ...]
    python -m dasslite.sweep fewshot  --trainer T --dataset D [--shots 1 2 4 8 16] [COMMON] [-- KEY VALUE ...]
    python -m dasslite.sweep xd       --trainer T [--source imagenet] [--targets D ...] [--shots 16] [COMMON] [-- ...]
    python -m dasslite.sweep dg       --trainer T [--source imagenet] [--targets D ...] [--shots 16] [COMMON] [-- ...]
    python -m dasslite.sweep osr      --trainer T --dataset D [--shots 16] [--splits 0 1 2 3 4] [--balance none]
                                      [COMMON] [-- ...]   (open-set recognition: see dasslite.sweep_osr)
    COMMON: [--seeds 1 2 3] [--cfg C] [--config-file F] [--data DATA] [--output output] [--load-epoch E]
            [--gpus 0,1] [--dry-run] [--zero-shot] [--ci95] [--no-feature-cache]   (fewshot has no --load-epoch:
            it evaluates nothing after training)
    D may be ``all`` (the eleven datasets) or a list ``a,b`` for base2new and fewshot: every dataset's runs in one
    plan and one pool, longest first, with a progress line and one table (``dasslite.sweep_multi``).

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
``--layout PHASE=TEMPLATE`` writes a phase's runs where the lineage's own scripts did (``dasslite.run_layout``);
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
import difflib
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from dasslite import results as results_mod
from dasslite import sweep_slurm
from dasslite import results_osr, sweep_osr
from dasslite import run_layout
from dasslite.sweep_signals import TerminatedError, stop_process, terminate_on_signals
from dasslite.utils.locks import describe_holder, lock_holder

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ZERO_SHOT_TRAINERS = results_mod.ZERO_SHOT_TRAINERS  # ("ZeroshotCLIP", "ZeroshotCLIP2")
# ``--zero-shot`` on a trainer that trains: its evaluations go to ``<cfg><ZERO_SHOT_SUFFIX>`` folders
ZERO_SHOT_SUFFIX = results_mod.ZERO_SHOT_SUFFIX

# A trainer's recipe where RECIPES names none for the dataset.
DEFAULT_CFGS = {"CoOp": "vit_b16_ctxv1", "LASP": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                "MoCoOp": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                "ZeroshotCLIP": "vit_b16", "ZeroshotCLIP2": "vit_b16",
                "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1", "KgCoOp": "vit_b16_ep100_ctxv1"}
DEFAULT_CFGS["PMoE"] = "vit_b16_ep10_ctxv1"  # pMoE-style: CLIP + DINO ViT-B/16 experts, CLIP joint-space head
DEFAULT_CFGS["FSMoE"] = "vit_b16_c8_ep10_batch32_coop"  # FSMoE's recipe for the 11 CoOp datasets
# Per-dataset recipes (from the LASP authors' logs; MoCoOp mirrors them, with its own ImageNet and Food101 files).
_LASP_EP50 = "vit_b16_c4_ep50_batch32_cls_t2t_10_wcl_25_g1_b_lr32"
_LASP_EP300 = "vit_b16_c4_ep300_batch32_cls_t2t_5_wcl_25_g1_b_lr32"
RECIPES: Dict[str, Dict[str, str]] = {
    "LASP": {"caltech101": _LASP_EP50, "dtd": _LASP_EP50, "ucf101": _LASP_EP50, "eurosat": _LASP_EP300,
             "food101": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b",
             "imagenet": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b"},
    "MoCoOp": {"caltech101": _LASP_EP50, "dtd": _LASP_EP50, "ucf101": _LASP_EP50, "eurosat": _LASP_EP300,
               "food101": "vit_b16_c4_ep10_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
               "imagenet": "vit_b16_c4_ep10_batch1_cls_t2t_5_wcl_25_g1_b_imagenet"},
}
# Opts a trainer needs on every evaluation on a dataset other than the one it was trained on: KEY -> the training
# dataset's DATASET.NAME (MoCoOp's experts are the training dataset's template groups).
SOURCE_BOUND_OPTS = {"MoCoOp": "TRAINER.MOCOOP.TEMPLATE_GROUPS"}
# trainers without their own configs/trainers/<T>/ folder borrow another's recipes
CONFIG_FOLDER_FALLBACK = {"ZeroshotCLIP2": "ZeroshotCLIP"}
DEMO_DATASET = "demo"
CONSOLE_FILE = "console.txt"
# The eleven datasets of the base-to-new / few-shot / cross-dataset tables, and the four ImageNet variants.
XD_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
               "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
TRANSFER_SOURCE = "imagenet"
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)
# A run folder's path ends in <protocol>/<phase>/<ds>/shots_<K>/<T>/<cfg>/seed<S>: model dirs are compared on that
# tail, so "output/..." and "/abs/output/..." name the same run.
LAYOUT_DEPTH = 7


def default_cfg(trainer: str, dataset: str) -> Optional[str]:
    """The recipe a sweep uses without ``--cfg``: demo on the demo world, else the per-dataset, else the trainer's."""
    if dataset == DEMO_DATASET:
        return DEMO_DATASET
    return RECIPES.get(trainer, {}).get(dataset) or DEFAULT_CFGS.get(trainer)


class SweepError(RuntimeError):
    """A run failed, or a finished run belongs to another protocol: the sweep stops (exit status 1)."""


class SweepUsageError(SweepError):
    """Bad arguments or a missing config/data folder (exit status 2)."""


# ------------------------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------------------------
def layout_tail(path: str) -> List[str]:
    """The last ``LAYOUT_DEPTH`` components of a run folder path (see LAYOUT_DEPTH)."""
    return osp.normpath(str(path)).replace("\\", "/").split("/")[-LAYOUT_DEPTH:]


@dataclass
class Job:
    """One train.py invocation. ``key`` is unique in a plan; ``depends_on`` lists keys that must succeed first."""

    key: str
    phase: str  # base2new: "train_base" | "test_new"; fewshot: "fewshot"; xd/dg: "train" | "test"
    seed: int
    output_dir: str
    argv: List[str]
    eval_only: bool
    expect: Dict[str, object] = field(default_factory=dict)  # results.json fields a finished run must match
    depends_on: List[str] = field(default_factory=list)
    cwd: Optional[str] = None
    dataset: str = ""  # the dataset config name the run reads
    model_dir: Optional[str] = None  # the trained model an evaluation loads
    config_file: Optional[str] = None  # the recipe file (a record's ``config_file`` must have its file name)
    results_file: str = results_mod.RESULTS_FILE  # the record that says the run is finished (osr: osr_results.json)

    @property
    def log_path(self) -> str:
        return osp.join(self.output_dir, results_mod.LOG_FILE)

    @property
    def results_path(self) -> str:
        return osp.join(self.output_dir, self.results_file)

    def conflicts(self, record: dict) -> Dict[str, tuple]:
        """``{field: (recorded, expected)}`` for every way a complete record belongs to another run.

        ``model_dir`` is compared on its layout tail, ``config_file`` on its file name (the record holds the path
        as train.py was given it, relative to the folder the sweep ran in); fields a record lacks are not checked.
        """
        wrong = {k: (record[k], v) for k, v in self.expect.items() if k in record and record[k] != v}
        if "model_dir" in record:
            got = record["model_dir"] or None
            if (got is None) != (self.model_dir is None) or (
                    got is not None and layout_tail(got) != layout_tail(self.model_dir)):
                wrong["model_dir"] = (record["model_dir"], self.model_dir)
        if self.config_file is not None and "config_file" in record:
            got = record["config_file"] or ""
            if osp.basename(str(got).replace("\\", "/")) != osp.basename(self.config_file):
                wrong["config_file"] = (record["config_file"], self.config_file)
        return wrong

    def state(self) -> str:
        """``done`` (complete results.json), ``resume`` (folder exists, incomplete) or ``new``.

        Raises SweepError when a complete record disagrees with the job (a run of another protocol).
        """
        record = read_complete_record(self.results_path)
        if record is not None:
            wrong = self.conflicts(record)
            if wrong:
                detail = ", ".join(f"{k}={got!r} (expected {want!r})" for k, (got, want) in wrong.items())
                hints = [CONFLICT_HINTS[k] for k in CONFLICT_HINTS if k in wrong]
                raise SweepError(f"{self.results_path} belongs to another run: {detail}. "
                                 + "".join(f"{h} " for h in hints)
                                 + "Move that folder away or use another --output.")
            return "done"
        holder = lock_holder(self.output_dir)
        if holder is not None:  # another sweep (or train.py) is training this run right now
            raise SweepError(f"{self.output_dir} is being written by {describe_holder(holder)}. Two sweeps must not "
                             "train one run: wait for that one, or use another --output")
        if osp.isdir(self.output_dir) and os.listdir(self.output_dir):
            return "resume"
        return "new"

    def command(self) -> str:
        return shlex.join(self.argv)


# Why a conflict on these fields happens, printed before "Move that folder away or use another --output."
CONFLICT_HINTS = {
    "load_epoch": "It evaluated another checkpoint epoch: the folders do not name the epoch, so give each "
                  "--load-epoch its own --output.",
    "config_file": "It was made with another recipe file: give --cfg a name of its own for that recipe, or use "
                   "another --output.",
}


def read_complete_record(path: str) -> Optional[dict]:
    """The results.json at ``path`` if it exists, parses and says ``"complete": true``; else None."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("complete") is True else None


# ------------------------------------------------------------------------------------------------------------
# Plans
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """Everything a plan depends on, already resolved to paths. ``dataset`` is the one trained on (xd/dg: source)."""

    protocol: str
    trainer: str
    cfg: str
    dataset: str
    shots: List[int]  # one value except for fewshot
    seeds: List[int]
    data_root: str
    config_file: str
    dataset_configs: Dict[str, str]  # dataset -> its configs/datasets/<ds>.yaml (the trained one and the targets)
    dataset_names: Dict[str, Optional[str]] = field(default_factory=dict)  # dataset -> DATASET.NAME in that yaml
    targets: List[str] = field(default_factory=list)  # xd/dg only
    output: str = "output"
    load_epoch: Optional[int] = None
    opts: List[str] = field(default_factory=list)  # added to every run (demo backbone + the user's extras)
    zero_shot: bool = False
    python: str = sys.executable
    train_py: str = osp.join(REPO_ROOT, "train.py")
    cwd: Optional[str] = None
    splits: List[int] = field(default_factory=lambda: [0])  # osr: the open-set benchmark's class splits
    balance: str = "none"  # osr: OSR.BALANCE
    layouts: Dict[str, str] = field(default_factory=dict)  # phase -> folder template (dasslite.run_layout)
    phases: List[str] = field(default_factory=list)  # run only these phases (empty: all)

    @property
    def results_root(self) -> str:
        return osp.join(self.output, self.protocol)

    def run_dir(self, seed: int, phase: Optional[str] = None, dataset: Optional[str] = None,
                shots: Optional[int] = None) -> str:
        """``<output>/<protocol>[/<phase>]/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` (fewshot has no phase folder), or the
        phase's ``--layout`` template."""
        template = self.layouts.get(phase or self.protocol)
        if template is not None:
            return run_layout.format_run_dir(
                template, output=self.output, protocol=self.protocol, phase=phase, dataset=dataset or self.dataset,
                shots=self.shots[0] if shots is None else shots, trainer=self.trainer, cfg=self.cfg, seed=seed)
        parts = [self.output, self.protocol] + ([phase] if phase else [])
        parts += [dataset or self.dataset, f"shots_{self.shots[0] if shots is None else shots}", self.trainer,
                  self.cfg, f"seed{seed}"]
        return osp.join(*parts)

    def source_dir(self, seed: int) -> str:
        """xd/dg's source run: ``<output>/transfer/train/<source>/shots_<K>/<T>/<cfg>/seed<S>``, one folder both
        protocols train into and evaluate from; an existing run of the older per-protocol layout
        (``<output>/<xd|dg>/train/...``) is used where it is, and a ``--layout train=...`` template wins."""
        legacy = self.run_dir(seed, "train")
        if osp.isdir(legacy) or "train" in self.layouts:  # an older run, or the folders a --layout asks for
            return legacy
        return osp.join(self.output, results_mod.TRANSFER_FOLDER, "train", self.dataset, f"shots_{self.shots[0]}",
                        self.trainer, self.cfg, f"seed{seed}")


def _make_job(spec: SweepSpec, key: str, phase: str, seed: int, dataset: str, shots: int, subsample: str,
              output_dir: str, model_dir: Optional[str] = None, depends_on: Sequence[str] = (),
              extra_opts: Sequence[str] = ()) -> Job:
    """One train.py run: an evaluation when the trainer is zero-shot or ``model_dir`` is given, else a training."""
    eval_only = spec.zero_shot or model_dir is not None
    argv = [spec.python, spec.train_py, "--root", spec.data_root, "--seed", str(seed), "--trainer", spec.trainer,
            "--dataset-config-file", spec.dataset_configs[dataset], "--config-file", spec.config_file,
            "--output-dir", output_dir]
    if eval_only:
        argv.append("--eval-only")
        if model_dir is None and spec.trainer not in ZERO_SHOT_TRAINERS:
            argv.append("--untrained")  # --zero-shot of a trainer that learns: its initial prompt, on purpose
    if model_dir is not None:
        argv += ["--model-dir", model_dir]
        if spec.load_epoch is not None:
            argv += ["--load-epoch", str(spec.load_epoch)]
    argv += ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample, *extra_opts, *spec.opts]
    expect: Dict[str, object] = {"trainer": spec.trainer, "seed": seed, "num_shots": shots,
                                 "subsample_classes": subsample, "eval_only": eval_only}
    if spec.dataset_names.get(dataset):
        expect["dataset"] = spec.dataset_names[dataset]
    if model_dir is not None and spec.load_epoch is not None:  # without --load-epoch: the latest, any epoch
        expect["load_epoch"] = spec.load_epoch
    return Job(key, phase, seed, output_dir, argv, eval_only, expect, list(depends_on), cwd=spec.cwd,
               dataset=dataset, model_dir=model_dir, config_file=spec.config_file)


def plan_base2new(spec: SweepSpec) -> List[Job]:
    """Seed by seed: train_base (or zero-shot eval on base), then test_new from that model."""
    jobs = []
    shots = spec.shots[0]
    for seed in spec.seeds:
        base_dir = spec.run_dir(seed, "train_base")
        base = _make_job(spec, f"train_base/seed{seed}", "train_base", seed, spec.dataset, shots, "base", base_dir)
        model = None if spec.zero_shot else base_dir
        new = _make_job(spec, f"test_new/seed{seed}", "test_new", seed, spec.dataset, shots, "new",
                        spec.run_dir(seed, "test_new"), model_dir=model, depends_on=[base.key] if model else [])
        jobs += [base, new]
    return jobs


def plan_fewshot(spec: SweepSpec) -> List[Job]:
    """Shots by shots, seed by seed: one training on all classes each (a zero-shot eval for zero-shot trainers)."""
    return [_make_job(spec, f"shots_{k}/seed{seed}", "fewshot", seed, spec.dataset, k, "all",
                      spec.run_dir(seed, shots=k))
            for k in spec.shots for seed in spec.seeds]


def source_bound_opts(spec: SweepSpec, target: str) -> List[str]:
    """``SOURCE_BOUND_OPTS`` of the trainer for an evaluation on ``target`` (none on the training dataset itself)."""
    key = SOURCE_BOUND_OPTS.get(spec.trainer)
    if key is None or target == spec.dataset:
        return []
    name = spec.dataset_names.get(spec.dataset)
    if not name:
        raise SweepUsageError(f"{spec.trainer} evaluations on other datasets need {key} <DATASET.NAME of "
                              f"{spec.dataset}>, but {spec.dataset_configs[spec.dataset]} has no DATASET.NAME")
    return [key, name]


def plan_transfer(spec: SweepSpec) -> List[Job]:
    """xd / dg, seed by seed: train on the source (once for both protocols), then evaluate it on every target."""
    jobs = []
    shots = spec.shots[0]
    for seed in spec.seeds:
        train_dir = spec.source_dir(seed)
        train = _make_job(spec, f"train/seed{seed}", "train", seed, spec.dataset, shots, "all", train_dir)
        jobs.append(train)
        model = None if spec.zero_shot else train_dir
        for target in spec.targets:
            jobs.append(_make_job(spec, f"test/{target}/seed{seed}", "test", seed, target, shots, "all",
                                  spec.run_dir(seed, "test", dataset=target), model_dir=model,
                                  depends_on=[train.key] if model else [],
                                  extra_opts=source_bound_opts(spec, target)))
    return jobs


PLANNERS: Dict[str, Callable[[SweepSpec], List[Job]]] = {  # the protocols
    "base2new": plan_base2new, "fewshot": plan_fewshot, "xd": plan_transfer, "dg": plan_transfer,
    "osr": lambda spec: sweep_osr.plan_osr(spec, _make_job)}


def plan(spec: SweepSpec) -> List[Job]:
    jobs = PLANNERS[spec.protocol](spec)
    return only_phases(jobs, spec.phases) if spec.phases else jobs


def only_phases(jobs: List[Job], phases: Sequence[str]) -> List[Job]:
    """The jobs of ``phases`` (``--phase``). An evaluation whose training is left out needs that training finished
    (a complete results.json in its model dir); its dependency is dropped."""
    kept = [job for job in jobs if job.phase in phases]
    keys = {job.key for job in kept}
    for job in kept:
        dropped = [d for d in job.depends_on if d not in keys]
        finished = job.model_dir and read_complete_record(osp.join(job.model_dir, results_mod.RESULTS_FILE))
        if dropped and job.model_dir and finished is None:
            raise SweepUsageError(f"{job.key} evaluates {job.model_dir}, which holds no finished training (no complete "
                                  f"{results_mod.RESULTS_FILE}): run the training phase first")
        job.depends_on = [d for d in job.depends_on if d in keys]
    return kept


# ------------------------------------------------------------------------------------------------------------
# Runners
# ------------------------------------------------------------------------------------------------------------
def _describe(job: Job) -> str:
    what = "evaluate" if job.eval_only else "train"
    where = f"{job.dataset}, " if job.dataset else ""
    sub = job.expect.get("subsample_classes", "")
    return f"[{job.key}] {what} on {where}{sub} classes -> {job.output_dir}"


def _announce_state(job: Job, state: str, out) -> None:
    if state == "done":
        print(f"Results exist in {job.output_dir} (complete); skipping", file=out)
    elif state == "resume":
        if job.eval_only:
            print(f"Incomplete run in {job.output_dir} (no complete results.json); evaluating again into it",
                  file=out)
        else:
            print(f"Incomplete run in {job.output_dir} (no complete results.json); re-running train.py into it "
                  f"(it resumes from the last checkpoint there, if any)", file=out)


def _failure(job: Job, rc: int, console: Optional[str] = None) -> SweepError:
    if rc == 0:
        why = f"train.py exited 0 but left no complete {results_mod.RESULTS_FILE} in the run folder"
    elif rc < 0:
        why = f"train.py was killed by signal {-rc}"
    else:
        why = f"train.py failed with exit status {rc}"
    lines = [f"{job.key}: {why}", f"  run folder: {job.output_dir}"]
    if osp.isfile(job.log_path):
        lines.append(f"  log file:   {job.log_path}")
    else:
        lines.append(f"  log file:   {job.log_path} (not written: train.py failed before logging started"
                     + ("; see the console file)" if console else "; see the output above)"))
    if console:
        lines.append(f"  console:    {console}")
        tail = _tail(console, 15)
        if tail:
            lines.append("  last lines of the console:")
            lines += [f"    {line}" for line in tail]
    lines.append(f"  command:    {job.command()}")
    lines.append("Fix the problem and re-run the same command: finished runs are skipped, this one resumes.")
    return SweepError("\n".join(lines))


def _tail(path: str, n: int) -> List[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


def _subprocess_launcher(job: Job, env: Dict[str, str]) -> int:
    """Run train.py attached to the console; if the sweep is stopped meanwhile, stop it too and wait for it."""
    proc = subprocess.Popen(job.argv, cwd=job.cwd, env=env)
    try:
        return proc.wait()
    except BaseException:
        stop_process(proc, f"{job.key} ({job.output_dir})")
        raise


class SequentialRunner:
    """Run the jobs in order, one at a time, console attached; stop at the first failure (SweepError).

    ``launcher(job, env) -> exit status`` runs one job (default: ``subprocess.run``); tests inject a fake.
    """

    def __init__(self, launcher: Callable[[Job, Dict[str, str]], int] = _subprocess_launcher,
                 env: Optional[Dict[str, str]] = None, out=None) -> None:
        self.launcher = launcher
        self.env = dict(os.environ if env is None else env)
        self.out = out if out is not None else sys.stdout

    def run(self, jobs: Sequence[Job]) -> Dict[str, str]:
        """Returns ``{key: "skipped" | "ran"}``."""
        outcome: Dict[str, str] = {}
        for job in jobs:
            missing = [d for d in job.depends_on if d not in outcome]
            if missing:  # only possible with a hand-built, badly ordered plan
                raise SweepError(f"{job.key} depends on {missing}, which did not run before it")
            state = job.state()
            _announce_state(job, state, self.out)
            if state == "done":
                outcome[job.key] = "skipped"
                continue
            print(_describe(job), file=self.out)
            print(f"$ {job.command()}", file=self.out)
            self.out.flush()
            start = time.time()
            rc = self.launcher(job, self.env)
            if rc != 0 or read_complete_record(job.results_path) is None:
                raise _failure(job, rc)
            print(f"[{job.key}] finished in {time.time() - start:.0f}s", file=self.out)
            outcome[job.key] = "ran"
        return outcome


def _popen_launcher(job: Job, env: Dict[str, str], console_path: str):
    os.makedirs(job.output_dir, exist_ok=True)
    fh = open(console_path, "a", encoding="utf-8")
    proc = subprocess.Popen(job.argv, cwd=job.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    proc._sweep_console = fh  # closed when the job ends
    return proc


class GpuPoolRunner:
    """One job per GPU id (``CUDA_VISIBLE_DEVICES``), the rest queued; a job starts once its dependencies succeeded.

    On a failure no new job starts, the running ones finish, and a SweepError reports every failure. On anything
    else that stops the pool (Ctrl-C, an OSError starting a job, a bug) the running jobs are terminated first.
    ``popen(job, env, console_path)`` returns an object with ``poll()`` and ``terminate()`` (default:
    ``subprocess.Popen``). Each GPU id may appear once (``running`` is keyed by it).
    """

    def __init__(self, gpus: Sequence[str], popen=_popen_launcher, env: Optional[Dict[str, str]] = None, out=None,
                 poll_interval: float = 0.5) -> None:
        if not gpus:
            raise SweepUsageError("GpuPoolRunner needs at least one GPU id")
        _check_unique_gpus(gpus)
        self.gpus = list(gpus)
        self.popen = popen
        self.env = dict(os.environ if env is None else env)
        self.out = out if out is not None else sys.stdout
        self.poll_interval = poll_interval

    def _stop(self, running: Dict[str, tuple], grace: float = 10.0) -> None:
        """Terminate the running jobs, wait up to ``grace`` seconds for them, then kill what is left."""
        for gpu, (job, proc, _, _) in running.items():
            try:
                if proc.poll() is None:
                    print(f"[gpu {gpu}] stopping {job.key} ({job.output_dir})", file=self.out)
                    proc.terminate()
            except Exception:  # one job that cannot be stopped must not keep the others running
                pass
        deadline = time.time() + grace
        for _, proc, _, _ in running.values():
            try:
                wait = getattr(proc, "wait", None)
                if wait is not None:
                    try:
                        wait(timeout=max(0.0, deadline - time.time()))
                    except subprocess.TimeoutExpired:
                        proc.kill()
            except Exception:
                pass
            fh = getattr(proc, "_sweep_console", None)
            if fh is not None:
                fh.close()

    def _skip_finished(self, pending: List[Job], outcome: Dict[str, str]) -> None:
        """Mark ready jobs whose results are already complete as skipped, without occupying a GPU."""
        progressed = True
        while progressed:
            progressed = False
            for job in list(pending):
                if all(outcome.get(d) for d in job.depends_on) and job.state() == "done":
                    _announce_state(job, "done", self.out)
                    outcome[job.key] = "skipped"
                    pending.remove(job)
                    progressed = True

    def run(self, jobs: Sequence[Job]) -> Dict[str, str]:
        keys = {j.key for j in jobs}
        for job in jobs:
            unknown = [d for d in job.depends_on if d not in keys]
            if unknown:
                raise SweepError(f"{job.key} depends on unknown jobs {unknown}")
        pending = list(jobs)
        running: Dict[str, tuple] = {}  # gpu -> (job, proc, console, start)
        outcome: Dict[str, str] = {}
        failures: List[SweepError] = []
        try:
            while pending or running:
                for gpu, (job, proc, console, start) in list(running.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    fh = getattr(proc, "_sweep_console", None)
                    if fh is not None:
                        fh.close()
                    del running[gpu]
                    if rc != 0 or read_complete_record(job.results_path) is None:
                        failures.append(_failure(job, rc, console))
                        print(f"[gpu {gpu}] FAILED {job.key} ({job.output_dir})", file=self.out)
                    else:
                        outcome[job.key] = "ran"
                        print(f"[gpu {gpu}] finished {job.key} in {time.time() - start:.0f}s", file=self.out)
                if not failures:
                    try:
                        self._skip_finished(pending, outcome)
                        for gpu in [g for g in self.gpus if g not in running]:
                            ready = next((j for j in pending if all(outcome.get(d) for d in j.depends_on)), None)
                            if ready is None:
                                break
                            pending.remove(ready)
                            _announce_state(ready, ready.state(), self.out)
                            env = dict(self.env, CUDA_VISIBLE_DEVICES=str(gpu))
                            console = osp.join(ready.output_dir, CONSOLE_FILE)
                            print(f"[gpu {gpu}] start {_describe(ready)} (console: {console})", file=self.out)
                            print(f"$ CUDA_VISIBLE_DEVICES={gpu} {ready.command()}", file=self.out)
                            running[gpu] = (ready, self.popen(ready, env, console), console, time.time())
                    except SweepError as exc:  # a finished run of another protocol: stop starting jobs
                        failures.append(exc)
                elif not running:
                    break
                if not running and pending and not failures:
                    stuck = ", ".join(j.key for j in pending)
                    raise SweepError(f"jobs whose dependencies never succeeded: {stuck}")
                self.out.flush()
                if running:
                    time.sleep(self.poll_interval)
        except BaseException:  # Ctrl-C, or an error of the pool itself: leave no train.py running unattended
            self._stop(running)
            raise
        if failures:
            not_started = [j.key for j in pending]
            msg = "\n\n".join(str(f) for f in failures)
            if not_started:
                msg += f"\nNot started: {', '.join(not_started)}"
            raise SweepError(msg)
        return outcome


def _check_unique_gpus(gpus: Sequence[str]) -> None:
    repeated = sorted({g for g in gpus if list(gpus).count(g) > 1}, key=list(gpus).index)
    if repeated:
        raise SweepUsageError(f"GPU id {', '.join(repeated)} given more than once in {','.join(gpus)}: the pool runs "
                              f"one job per GPU, so list each GPU once")


def parse_gpus(text: Optional[str]) -> List[str]:
    """``"0,1, 2"`` -> ``["0", "1", "2"]``; empty or None -> ``[]``; a repeated id is a SweepUsageError."""
    if not text:
        return []
    gpus = [g.strip() for g in text.replace(" ", ",").split(",") if g.strip()]
    bad = [g for g in gpus if not (g.isdigit() or g.startswith(("GPU-", "MIG-")))]
    if bad:  # CUDA ignores an id it cannot parse, so the job would silently run on the CPU
        raise SweepUsageError(f"GPU id {bad[0]!r} in GPUS / --gpus {text!r} is not a GPU index (0, 1, ...) or a "
                              "GPU-/MIG- UUID; list the ids as `nvidia-smi -L` shows them, e.g. GPUS=0,1")
    _check_unique_gpus(gpus)
    return gpus


def make_runner(gpus: Sequence[str], env: Optional[Dict[str, str]] = None, out=None):
    """More than one GPU id -> the pool; exactly one -> sequential on that GPU; none -> sequential as is."""
    env = dict(os.environ if env is None else env)
    if len(gpus) > 1:
        return GpuPoolRunner(gpus, env=env, out=out)
    if len(gpus) == 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[0]
    return SequentialRunner(env=env, out=out)


# ------------------------------------------------------------------------------------------------------------
# Resolving the command line (shared by every protocol)
# ------------------------------------------------------------------------------------------------------------
def _available(folder: str, suffix: str = ".yaml") -> List[str]:
    if not osp.isdir(folder):
        return []
    return sorted(n[: -len(suffix)] for n in os.listdir(folder) if n.endswith(suffix))


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _rel(path: str, cwd: str) -> str:
    """``path`` relative to ``cwd`` when it lies inside it (CoOp-style short paths in logs), else absolute."""
    path = osp.abspath(path)
    try:
        rel = osp.relpath(path, cwd)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def find_dataset_config(repo_root: str, dataset: str) -> str:
    """``configs/datasets/<dataset>.yaml`` (absolute), or SweepUsageError with the close names."""
    folder = osp.join(repo_root, "configs", "datasets")
    path = osp.join(folder, f"{dataset}.yaml")
    if not osp.isfile(path):
        options = _available(folder)
        raise SweepUsageError(f"no dataset config {path}.{_did_you_mean(dataset, options)} "
                              f"Available: {', '.join(options) or '(none)'}")
    return path


def read_dataset_name(path: str) -> Optional[str]:
    """``DATASET.NAME`` of a dataset yaml (what train.py writes as ``dataset`` in results.json), or None.

    A file that cannot be read or parsed, or that is not a YAML mapping, is a SweepUsageError naming it.
    """
    try:
        import yaml
    except ImportError:  # PyYAML comes with yacs; without it the records' dataset is simply not checked
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise SweepUsageError(f"cannot read dataset config {path}: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise SweepUsageError(f"cannot parse dataset config {path}: {exc}") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SweepUsageError(f"dataset config {path} is not a YAML mapping (got {type(data).__name__}); expected "
                              f"a DATASET: section with its NAME")
    node = data.get("DATASET")
    name = node.get("NAME") if isinstance(node, dict) else None
    return str(name) if name else None


def known_trainers(repo_root: str) -> List[str]:
    """The trainers the sweep knows: those with a default recipe, a fallback, or a ``configs/trainers/<T>/`` folder."""
    folder = osp.join(repo_root, "configs", "trainers")
    names = set(DEFAULT_CFGS) | set(ZERO_SHOT_TRAINERS) | set(CONFIG_FOLDER_FALLBACK)
    if osp.isdir(folder):
        names |= {n for n in os.listdir(folder) if not n.startswith(".") and osp.isdir(osp.join(folder, n))}
    return sorted(names)


def check_trainer(repo_root: str, trainer: str, config_file: Optional[str] = None) -> None:
    """SweepUsageError with the close names for a trainer the sweep does not know (``mocoop``, ``CoOP``, ``LAPS``).

    With ``--config-file`` a name of one's own is accepted unless it is a near miss of a known trainer.
    """
    known = known_trainers(repo_root)
    if trainer in known:
        return
    by_lower = {k.lower(): k for k in known}
    close = ([by_lower[trainer.lower()]] if trainer.lower() in by_lower else
             [by_lower[c] for c in difflib.get_close_matches(trainer.lower(), list(by_lower), n=3, cutoff=0.75)])
    if config_file and not close:
        return
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise SweepUsageError(f"unknown trainer {trainer!r}.{hint} Known trainers: {', '.join(known)} (trainer names "
                          f"are case-sensitive; a trainer of your own needs configs/trainers/{trainer}/ or "
                          f"--config-file)")


def find_trainer_config(repo_root: str, trainer: str, cfg: str, config_file: Optional[str] = None) -> str:
    """``configs/trainers/<T>/<cfg>.yaml`` (absolute; ``CONFIG_FOLDER_FALLBACK`` applies) or ``config_file``."""
    if config_file:
        path = osp.abspath(config_file)
        if not osp.isfile(path):
            raise SweepUsageError(f"no trainer config {path}")
        return path
    folders = [trainer] + ([CONFIG_FOLDER_FALLBACK[trainer]] if trainer in CONFIG_FOLDER_FALLBACK else [])
    candidates = [osp.join(repo_root, "configs", "trainers", f, f"{cfg}.yaml") for f in folders]
    path = next((c for c in candidates if osp.isfile(c)), None)
    if path is None:
        options = _available(osp.join(repo_root, "configs", "trainers", folders[-1]))
        raise SweepUsageError(f"no trainer config {candidates[0]}.{_did_you_mean(cfg, options)} "
                              f"Available for {folders[-1]}: {', '.join(options) or '(none)'}")
    return path


def resolve_data(is_demo: bool, data: Optional[str], environ: Dict[str, str],
                 demo_world: Optional[Callable[[], object]] = None):
    """``(data root, opts)``: the demo world (its root; its tiny CLIP as ``MODEL.BACKBONE.NAME``) or --data / $DATA."""
    if is_demo:
        if demo_world is None:
            from dasslite.demo import ensure_demo_world as demo_world
        print("Preparing the offline demo world (built once, then cached) ...", flush=True)
        world = demo_world()
        return str(world.root), ["MODEL.BACKBONE.NAME", str(world.clip_checkpoint)]
    data_root = data or environ.get("DATA", "")
    if not data_root:
        raise SweepUsageError("no data root: pass --data DIR or set DATA=/path/to/datasets "
                              "(CoOp's layout; the 'demo' dataset needs none)")
    if not osp.isdir(data_root):
        raise SweepUsageError(f"data root {data_root} does not exist (from {'--data' if data else '$DATA'})")
    return osp.abspath(data_root), []


def _transfer_datasets(args) -> tuple:
    """xd/dg: (source, targets) with the defaults, refusing the demo world and a source among the targets."""
    source = args.source
    if args.targets:
        targets = list(dict.fromkeys(args.targets))
    elif args.protocol == "dg":
        targets = list(DG_TARGETS)
    else:
        targets = [d for d in XD_DATASETS if d != source]
    if DEMO_DATASET in [source] + targets:
        raise SweepUsageError(f"{args.protocol} needs real datasets: the demo world is a single dataset, so there is "
                              f"nothing to transfer to. Run base2new or fewshot on demo instead.")
    if source in targets:
        raise SweepUsageError(f"--targets includes the source {source}: its result comes from the training run "
                              f"(the 'source' column); drop it from --targets")
    return source, targets


def zero_shot_cfg(cfg: str) -> str:
    """The ``<cfg>`` folder of ``--zero-shot`` evaluations of a trainer that trains."""
    return cfg if cfg.endswith(ZERO_SHOT_SUFFIX) else cfg + ZERO_SHOT_SUFFIX


def resolve_spec(args, environ: Optional[Dict[str, str]] = None,
                 demo_world: Optional[Callable[[], object]] = None, cwd: Optional[str] = None) -> SweepSpec:
    """Turn parsed CLI arguments (any protocol) into a spec: config files, data root (demo world or $DATA), defaults."""
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    repo_root = osp.abspath(args.repo_root or REPO_ROOT)
    train_py = osp.abspath(args.train_py or osp.join(repo_root, "train.py"))
    if not osp.isfile(train_py):
        raise SweepUsageError(f"train.py not found at {train_py} (use --train-py or --repo-root)")
    config_file = args.config_file
    check_trainer(repo_root, args.trainer, config_file)
    zero_shot = args.zero_shot or args.trainer in ZERO_SHOT_TRAINERS

    if args.protocol in ("xd", "dg"):
        dataset, targets = _transfer_datasets(args)
    else:
        dataset, targets = args.dataset, []
    shots = list(args.shots) if isinstance(args.shots, list) else [args.shots]

    if args.cfg:
        cfg = args.cfg
    elif config_file:  # the recipe file names the folder, so another recipe never lands in the default's folder
        cfg = osp.splitext(osp.basename(config_file))[0]
    else:
        cfg = default_cfg(args.trainer, dataset)
    if not cfg:
        raise SweepUsageError(f"--cfg is required for trainer {args.trainer} (a recipe name in "
                              f"configs/trainers/{args.trainer}/, or --config-file FILE)")
    ds_paths = {ds: find_dataset_config(repo_root, ds) for ds in [dataset] + targets}
    tr_cfg = find_trainer_config(repo_root, args.trainer, cfg, config_file)
    if args.zero_shot and args.trainer not in ZERO_SHOT_TRAINERS:
        cfg = zero_shot_cfg(cfg)  # never the folders of this trainer's trained runs
    data_root, opts = resolve_data(dataset == DEMO_DATASET, args.data, environ, demo_world)
    if len(args.extra_opts) % 2:
        raise SweepUsageError(f"extra opts must be KEY VALUE pairs, got {args.extra_opts}")
    opts += list(args.extra_opts)
    if getattr(args, "no_feature_cache", False):
        opts += ["FEATURE_CACHE.ENABLED", "False"]
    seeds = list(args.seeds)  # parse_args has de-duplicated and checked them
    try:
        layouts = run_layout.parse_layouts(getattr(args, "layout", None), args.protocol)
        phases = run_layout.parse_phases(getattr(args, "phase", None), args.protocol)
    except run_layout.LayoutError as exc:
        raise SweepUsageError(str(exc)) from None
    spec = SweepSpec(protocol=args.protocol, trainer=args.trainer, cfg=cfg, dataset=dataset, shots=shots,
                     seeds=seeds, data_root=data_root, config_file=_rel(tr_cfg, cwd),
                     dataset_configs={ds: _rel(p, cwd) for ds, p in ds_paths.items()},
                     dataset_names={ds: read_dataset_name(p) for ds, p in ds_paths.items()}, targets=targets,
                     output=args.output, load_epoch=getattr(args, "load_epoch", None), opts=opts,
                     zero_shot=zero_shot, python=args.python or sys.executable, train_py=train_py, cwd=cwd,
                     layouts=layouts, phases=phases)
    for target in targets:
        source_bound_opts(spec, target)  # fails now, not half-way, when the source yaml has no DATASET.NAME
    if args.protocol == "osr":
        try:
            spec.splits = sweep_osr.check_osr_args(dataset, args.splits, args.balance)
        except ValueError as exc:
            raise SweepUsageError(str(exc)) from None
        spec.balance = args.balance
    return spec


def _int_list(values: Sequence[str], what: str, minimum: int) -> List[int]:
    """``["1", "2,3"]`` -> ``[1, 2, 3]`` (``results_mod.parse_int_list``); SweepUsageError naming ``what``."""
    try:
        return results_mod.parse_int_list(values, what, minimum)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None


def _add_common_args(p: argparse.ArgumentParser, evaluates: bool = True) -> None:
    recipes = "; ".join(f"{t}: per dataset, see sweep.RECIPES" if t in RECIPES else f"{t}: {c}"
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
    sweep_slurm.add_slurm_args(p)
    p.add_argument("--phase", nargs="+", default=None, help="run only these phases (base2new: train_base test_new; "
                                                            "xd/dg: train test); the table is then not printed")
    p.add_argument("--layout", action="append", default=None, metavar="PHASE=TEMPLATE",
                   help="run folders of PHASE from TEMPLATE, e.g. the lineage scripts' own layouts "
                        "(see dasslite.run_layout); the table is then not printed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="protocol", required=True)
    tail = "Everything after a lone '--' is passed to every train.py run as KEY VALUE opts."
    b = sub.add_parser("base2new", help="train on base classes, evaluate on new classes, print Base/New/H",
                       description=tail)
    b.add_argument("--dataset", required=True, help="dataset config name in configs/datasets/ (or 'demo'), "
                                                  "'all' (the 11 datasets) or a list 'a,b' (dasslite.sweep_multi)")
    b.add_argument("--shots", type=int, default=16, help="shots per base class (default: %(default)s)")
    _add_common_args(b)
    f = sub.add_parser("fewshot", help="train on all classes with 1/2/4/8/16 shots, print the few-shot curve",
                       description=tail)
    f.add_argument("--dataset", required=True, help="dataset config name in configs/datasets/ (or 'demo'), "
                                                  "'all' (the 11 datasets) or a list 'a,b' (dasslite.sweep_multi)")
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
                       description=tail + " " + sweep_osr.__doc__.split("\n\n")[1])
    o.add_argument("--dataset", required=True, help=f"an open-set benchmark ({', '.join(sweep_osr.OSR_BENCHMARKS)}) "
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


def print_plan(jobs: Sequence[Job], out) -> None:
    for job in jobs:
        try:
            state = job.state()
        except SweepError as exc:
            state = f"CONFLICT: {exc}"
        label = {"done": "skip (complete)", "resume": "resume (incomplete)", "new": "run"}.get(state, state)
        deps = f" after {', '.join(job.depends_on)}" if job.depends_on else ""
        print(f"[{job.key}] {label}{deps}", file=out)
        print(f"  $ {job.command()}", file=out)


def describe_spec(spec: SweepSpec) -> str:
    """The one-line header a sweep prints before its plan."""
    seeds = " ".join(map(str, spec.seeds))
    where = f"data: {spec.data_root}; output: {spec.results_root}"
    if spec.protocol == "base2new":
        kind = "zero-shot eval" if spec.zero_shot else "train base -> eval new"
        return (f"base2new: {spec.trainer} / {spec.cfg} on {spec.dataset}, {spec.shots[0]} shots, seeds {seeds} "
                f"({kind}); {where}")
    if spec.protocol == "fewshot":
        kind = "zero-shot eval" if spec.zero_shot else "train on all classes"
        return (f"fewshot: {spec.trainer} / {spec.cfg} on {spec.dataset}, shots {' '.join(map(str, spec.shots))}, "
                f"seeds {seeds} ({kind}); {where}")
    if spec.protocol == "osr":
        return sweep_osr.describe_osr(spec)
    kind = "zero-shot eval" if spec.zero_shot else "train on the source -> eval on each target"
    return (f"{spec.protocol}: {spec.trainer} / {spec.cfg}, source {spec.dataset} ({spec.shots[0]} shots) -> "
            f"{' '.join(spec.targets)}, seeds {seeds} ({kind}); {where}")


def collect_tables(spec: SweepSpec, ci95: bool = False, paper: Optional[dict] = None) -> str:
    """The protocol's results table over the spec's runs, as text (``paper``: published numbers beside them)."""
    common = dict(trainer=spec.trainer, cfg=spec.cfg, seeds=spec.seeds, ci95=ci95)
    if spec.protocol == "base2new":
        return results_mod.format_base2new(results_mod.collect_base2new(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots[0], **common), paper=paper)
    if spec.protocol == "osr":
        return results_osr.format_osr(results_osr.collect_osr(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots[0], balance=spec.balance, **common))
    if spec.protocol == "fewshot":
        return results_mod.format_grids(results_mod.collect_fewshot(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots, **common))
    return results_mod.format_grids(results_mod.collect_transfer(
        spec.results_root, spec.protocol, source=spec.dataset, targets=spec.targets, shots=spec.shots[0], paper=paper,
        **common))


def launcher_of(args, environ: Dict[str, str]) -> str:
    """``--launcher`` / ``$LAUNCHER``: local or slurm (SweepUsageError otherwise)."""
    try:
        return sweep_slurm.launcher_from(args, environ)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None


def slurm_runner(args, spec: SweepSpec, environ: Dict[str, str], name: Optional[str] = None):
    """The SLURM launcher for this sweep (options from the flags and SWEEP_* variables, see dasslite.sweep_slurm)."""
    if args.gpus:
        raise SweepUsageError("--gpus picks local GPUs for the pool; with --launcher slurm ask SLURM for them "
                              "with --gpus-per-task N (SWEEP_GPUS_PER_TASK)")
    try:
        options = sweep_slurm.options_from(args, environ)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None
    options.job_name = f"{spec.protocol}-{spec.trainer}-{name or spec.dataset}"
    return sweep_slurm.SlurmRunner(options, sweep_slurm.SlurmClient(env=environ), python=spec.python,
                                   state_root=osp.abspath(spec.results_root))


def print_table_so_far(table: Callable[[], str], out) -> None:
    """The table of what is done while a scheduler still holds runs (a sweep that did not wait for them)."""
    try:
        print(table(), file=out)
    except results_mod.NoResultsError:
        print("No finished runs yet: run the same command again once the SLURM tasks end.", file=out)


def run_sweep(spec: SweepSpec, runner=None, dry_run: bool = False, ci95: bool = False, out=None,
              paper: Optional[dict] = None) -> int:
    out = out if out is not None else sys.stdout
    jobs = plan(spec)
    print(describe_spec(spec), file=out)
    if dry_run:
        print_plan(jobs, out)
        if hasattr(runner, "render"):  # a scheduler's job scripts, submitted by a real run
            print(runner.render(jobs), file=out)
        return 0
    runner = runner if runner is not None else make_runner([], out=out)
    runner.run(jobs)
    print("", file=out)
    if spec.layouts or spec.phases:  # the tables read the sweep's own layout, over every phase
        folders = sorted({osp.dirname(job.output_dir) for job in jobs})
        print("Done. Per-seed results: python parse_test_res.py " + " | ".join(folders)
              + (" --test-log" if all(job.eval_only for job in jobs) else ""), file=out)
        return 0
    if getattr(runner, "in_flight", None):  # submitted to a scheduler and not waited for: what is done so far
        print_table_so_far(lambda: collect_tables(spec, ci95, paper), out)
        return 0
    print(collect_tables(spec, ci95, paper), file=out)
    from dasslite import compare  # several methods under this output root: their comparison too

    compare.print_if_several(spec.protocol, spec.results_root, out, shots=spec.shots,
                             datasets=[spec.dataset] + list(spec.targets), seeds=spec.seeds, ci95=ci95, paper=paper)
    return 0


def main(argv: Optional[Sequence[str]] = None, demo_world=None, runner=None, environ=None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        from dasslite import sweep_multi  # --dataset all / a list: one plan, one pool
        if sweep_multi.is_multi(args):
            return sweep_multi.run_multi(args, environ=environ, demo_world=demo_world, runner=runner)
        spec = resolve_spec(args, environ=environ, demo_world=demo_world)
        if runner is None and launcher_of(args, environ) == "slurm":
            runner = slurm_runner(args, spec, environ)
        elif runner is None and not args.dry_run:
            runner = make_runner(parse_gpus(args.gpus if args.gpus is not None else environ.get("GPUS")), env=environ)
        paper = results_mod.load_paper() if args.paper else None
        return run_sweep(spec, runner=runner, dry_run=args.dry_run, ci95=args.ci95, paper=paper)
    except SweepUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepError, results_mod.NoResultsError, sweep_slurm.SlurmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TerminatedError) as exc:
        why = f" by {exc}" if isinstance(exc, TerminatedError) else ""
        print(f"\ninterrupted{why}; the running train.py jobs were stopped and waited for (named above). Re-run the "
              "same command to continue (finished runs are skipped, interrupted ones resume)", file=sys.stderr)
        return 143 if isinstance(exc, TerminatedError) else 130


if __name__ == "__main__":
    terminate_on_signals()  # SIGTERM/SIGHUP stop the sweep like Ctrl-C: its train.py children too
    from dasslite import sweep as _sweep  # one module object, so errors raised in dasslite.sweep_multi are caught

    sys.exit(_sweep.main())
