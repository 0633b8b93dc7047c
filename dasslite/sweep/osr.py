"""The open-set protocol of ``python -m dasslite.sweep osr``: which train.py runs, in which folders.

Two kinds of datasets:

* an open-set benchmark (``OSR_BENCHMARKS``: CIFAR10 6/4, CIFAR+10, CIFAR+50, TinyImageNet 20/180), for each split
  in ``--splits`` (default 0-4) and seed: train on the split's known classes and evaluate open-set at the end, into
  ``<output>/osr/split<i>/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` (zero-shot trainers: evaluation only);
* a CoOp dataset (or the demo world): known = base classes, unknown = new classes. Each seed reuses the base2new
  training run ``<output>/base2new/train_base/<ds>/shots_<K>/<T>/<cfg>/seed<S>`` (planned here too, and skipped when
  base2new already finished it), then ``--eval-only --model-dir`` that folder on the base classes with
  ``OSR.ENABLED True`` into ``<output>/osr/base_new/<ds>/...``.

An open-set run is finished when its ``osr_results.json`` is complete; the record names its split and balance mode,
so a finished run with another one stops the sweep instead of being reused. The planner gets the sweep's job
builder as an argument, so this module does not import ``dasslite.sweep``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

from dasslite.osr_metrics import BALANCE_MODES, OSR_RESULTS_FILE

# configs/datasets/<name>.yaml of the open-set benchmarks, each with five known/unknown splits
OSR_BENCHMARKS = ("osr_cifar10", "osr_cifar_plus10", "osr_cifar_plus50", "osr_tinyimagenet")
NUM_SPLITS = 5
# `bash scripts/<method>/osr.sh demo`: that method beside these, on the demo world, in one table
DEMO_TRAINERS = ("FSMoE", "CoCoOp", "ZeroshotCLIP")
BASE_NEW_PHASE = "base_new"  # the phase folder of base-vs-new open-set runs on the CoOp datasets


def split_phase(split: int) -> str:
    return f"split{split}"


def osr_opts(split: int, balance: str) -> List[str]:
    return ["OSR.ENABLED", "True", "OSR.SPLIT", str(split), "OSR.BALANCE", balance]


def check_osr_args(dataset: str, splits: Optional[Sequence[int]], balance: str) -> List[int]:
    """The splits to run (benchmarks: default all five); ValueError for splits on a base/new dataset or a bad one."""
    if balance not in BALANCE_MODES:
        raise ValueError(f"--balance {balance!r} is not one of {', '.join(BALANCE_MODES)}")
    if dataset not in OSR_BENCHMARKS:
        if splits:
            raise ValueError(f"--splits is for the open-set benchmarks ({', '.join(OSR_BENCHMARKS)}); on {dataset} "
                             f"the known classes are the base classes and the unknown ones the new classes")
        return [0]
    splits = list(range(NUM_SPLITS)) if not splits else list(splits)
    bad = [s for s in splits if not 0 <= s < NUM_SPLITS]
    if bad:
        raise ValueError(f"--splits {bad}: {dataset} has splits 0-{NUM_SPLITS - 1}")
    return splits


def _open_set_job(job, split: int, balance: str):
    """Turn a planned train.py run into an open-set one: finished when osr_results.json is complete."""
    job.results_file = OSR_RESULTS_FILE
    job.expect.update(osr_split=split, balance=balance)
    return job


def plan_osr(spec, make_job: Callable) -> list:
    """The jobs of the osr protocol (see the module docstring); ``make_job`` is ``dasslite.sweep._make_job``."""
    jobs = []
    shots = spec.shots[0]
    if spec.dataset in OSR_BENCHMARKS:
        for split in spec.splits:
            for seed in spec.seeds:
                job = make_job(spec, f"{split_phase(split)}/seed{seed}", split_phase(split), seed, spec.dataset,
                               shots, "all", spec.run_dir(seed, split_phase(split)),
                               extra_opts=osr_opts(split, spec.balance))
                jobs.append(_open_set_job(job, split, spec.balance))
        return jobs
    base2new = dataclasses.replace(spec, protocol="base2new")
    for seed in spec.seeds:
        depends, model_dir = [], None
        if not spec.zero_shot:
            model_dir = base2new.run_dir(seed, "train_base")
            train = make_job(base2new, f"train_base/seed{seed}", "train_base", seed, spec.dataset, shots, "base",
                             model_dir)
            jobs.append(train)
            depends = [train.key]
        job = make_job(spec, f"{BASE_NEW_PHASE}/seed{seed}", BASE_NEW_PHASE, seed, spec.dataset, shots, "base",
                       spec.run_dir(seed, BASE_NEW_PHASE), model_dir=model_dir, depends_on=depends,
                       extra_opts=osr_opts(0, spec.balance))
        jobs.append(_open_set_job(job, 0, spec.balance))
    return jobs


def describe_osr(spec) -> str:
    seeds = " ".join(map(str, spec.seeds))
    if spec.dataset in OSR_BENCHMARKS:
        what = f"splits {' '.join(map(str, spec.splits))} (train on the known classes, then open-set test)"
    else:
        what = "known = base classes, unknown = new classes (reusing the base2new training runs)"
    kind = " (zero-shot eval)" if spec.zero_shot else ""
    return (f"osr: {spec.trainer} / {spec.cfg} on {spec.dataset}, {spec.shots[0]} shots, seeds {seeds}, {what}, "
            f"balance {spec.balance}{kind}; data: {spec.data_root}; output: {spec.results_root}")
