"""Running one resolved sweep: print its plan, pick its runner (local, GPU pool or SLURM), run it, print its table
and, when other methods have runs under the same output, their comparison."""
from __future__ import annotations

import os.path as osp
import sys
from typing import Callable, Dict, Optional, Sequence

from dasslite.results.base2new import collect_base2new, format_base2new
from dasslite.results.compare import print_if_several
from dasslite.results.fewshot import collect_fewshot
from dasslite.results.grid import format_grids
from dasslite.results.osr import collect_osr, format_osr
from dasslite.results.runs import NoResultsError
from dasslite.results.transfer import collect_transfer
from dasslite.sweep.jobs import Job, SweepUsageError
from dasslite.sweep.plans import SweepSpec, describe_spec, plan
from dasslite.sweep.runners import make_runner
from dasslite.sweep.slurm import SlurmClient, SlurmRunner, launcher_from, options_from


def print_plan(jobs: Sequence[Job], out) -> None:
    for job in jobs:
        print(f"[{job.key}] {job.plan_label()}", file=out)
        print(f"  $ {job.command()}", file=out)


def collect_tables(spec: SweepSpec, ci95: bool = False, paper: Optional[dict] = None) -> str:
    """The protocol's results table over the spec's runs, as text (``paper``: published numbers beside them)."""
    common = dict(trainer=spec.trainer, cfg=spec.cfg, seeds=spec.seeds, ci95=ci95)
    if spec.protocol == "base2new":
        return format_base2new(collect_base2new(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots[0], **common), paper=paper)
    if spec.protocol == "osr":
        return format_osr(collect_osr(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots[0], balance=spec.balance, **common))
    if spec.protocol == "fewshot":
        return format_grids(collect_fewshot(
            spec.results_root, datasets=[spec.dataset], shots=spec.shots, **common))
    return format_grids(collect_transfer(
        spec.results_root, spec.protocol, source=spec.dataset, targets=spec.targets, shots=spec.shots[0], paper=paper,
        **common))


def launcher_of(args, environ: Dict[str, str]) -> str:
    """``--launcher`` / ``$LAUNCHER``: local or slurm (SweepUsageError otherwise)."""
    try:
        return launcher_from(args, environ)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None


def slurm_runner(args, spec: SweepSpec, environ: Dict[str, str], name: Optional[str] = None):
    """The SLURM launcher for this sweep (options from the flags and SWEEP_* variables, see dasslite.sweep.slurm)."""
    if args.gpus:
        raise SweepUsageError("--gpus picks local GPUs for the pool; with --launcher slurm ask SLURM for them "
                              "with --gpus-per-task N (SWEEP_GPUS_PER_TASK)")
    try:
        options = options_from(args, environ)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None
    options.job_name = f"{spec.protocol}-{spec.trainer}-{name or spec.dataset}"
    return SlurmRunner(options, SlurmClient(env=environ), python=spec.python,
                       state_root=osp.abspath(spec.results_root))


def print_table_so_far(table: Callable[[], str], out) -> None:
    """The table of what is done while a scheduler still holds runs (a sweep that did not wait for them)."""
    try:
        print(table(), file=out)
    except NoResultsError:
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
    # several methods under this output root: their comparison too
    print_if_several(spec.protocol, spec.results_root, out, shots=spec.shots,
                     datasets=[spec.dataset] + list(spec.targets), seeds=spec.seeds, ci95=ci95, paper=paper)
    return 0
