"""Plans: a resolved :class:`SweepSpec` turned into the ordered jobs of its protocol (base2new, fewshot, xd / dg, osr).
See ``python -m dasslite.sweep -h`` for the folders each protocol writes."""
from __future__ import annotations

import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from dasslite.recipes import SOURCE_BOUND_OPTS, ZERO_SHOT_TRAINERS
from dasslite.results.runs import RESULTS_FILE, read_complete_record
from dasslite.results.transfer import TRANSFER_FOLDER
from dasslite.sweep import layout
from dasslite.sweep import osr as osr_protocol
from dasslite.sweep.jobs import Job, SweepUsageError
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the checkout holding train.py


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
    layouts: Dict[str, str] = field(default_factory=dict)  # phase -> folder template (dasslite.sweep.layout)
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
            return layout.format_run_dir(
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
        return osp.join(self.output, TRANSFER_FOLDER, "train", self.dataset, f"shots_{self.shots[0]}",
                        self.trainer, self.cfg, f"seed{seed}")


def make_job(spec: SweepSpec, key: str, phase: str, seed: int, dataset: str, shots: int, subsample: str,
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
        base = make_job(spec, f"train_base/seed{seed}", "train_base", seed, spec.dataset, shots, "base", base_dir)
        model = None if spec.zero_shot else base_dir
        new = make_job(spec, f"test_new/seed{seed}", "test_new", seed, spec.dataset, shots, "new",
                       spec.run_dir(seed, "test_new"), model_dir=model, depends_on=[base.key] if model else [])
        jobs += [base, new]
    return jobs


def plan_fewshot(spec: SweepSpec) -> List[Job]:
    """Shots by shots, seed by seed: one training on all classes each (a zero-shot eval for zero-shot trainers)."""
    return [make_job(spec, f"shots_{k}/seed{seed}", "fewshot", seed, spec.dataset, k, "all",
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
        train = make_job(spec, f"train/seed{seed}", "train", seed, spec.dataset, shots, "all", train_dir)
        jobs.append(train)
        model = None if spec.zero_shot else train_dir
        for target in spec.targets:
            jobs.append(make_job(spec, f"test/{target}/seed{seed}", "test", seed, target, shots, "all",
                                 spec.run_dir(seed, "test", dataset=target), model_dir=model,
                                 depends_on=[train.key] if model else [],
                                 extra_opts=source_bound_opts(spec, target)))
    return jobs
PLANNERS: Dict[str, Callable[[SweepSpec], List[Job]]] = {  # the protocols
    "base2new": plan_base2new, "fewshot": plan_fewshot, "xd": plan_transfer, "dg": plan_transfer,
    "osr": lambda spec: osr_protocol.plan_osr(spec, make_job)}


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
        finished = job.model_dir and read_complete_record(osp.join(job.model_dir, RESULTS_FILE))
        if dropped and job.model_dir and finished is None:
            raise SweepUsageError(f"{job.key} evaluates {job.model_dir}, which holds no finished training (no complete "
                                  f"{RESULTS_FILE}): run the training phase first")
        job.depends_on = [d for d in job.depends_on if d in keys]
    return kept


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
        return osr_protocol.describe_osr(spec)
    kind = "zero-shot eval" if spec.zero_shot else "train on the source -> eval on each target"
    return (f"{spec.protocol}: {spec.trainer} / {spec.cfg}, source {spec.dataset} ({spec.shots[0]} shots) -> "
            f"{' '.join(spec.targets)}, seeds {seeds} ({kind}); {where}")
