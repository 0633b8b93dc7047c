"""Multi-dataset sweeps: ``--dataset all`` (or a list) as one plan and one pool (``python -m dasslite.sweep``).

    python -m dasslite.sweep base2new --trainer T --dataset all [COMMON]          # the 11 datasets, papers' order
    python -m dasslite.sweep fewshot  --trainer T --dataset eurosat,dtd,oxford_pets [COMMON]
    bash scripts/mocoop/base2new.sh all 16          bash scripts/coop/base2new.sh "eurosat dtd" 16

What it does
    ``DATASET`` is ``all`` (``XD_DATASETS``: the eleven datasets of the papers' tables, in their order) or names
    separated by commas or spaces (``all`` may appear in a list; repeats are dropped). Every name is checked before
    anything runs: unknown ones are reported together, each with its close matches. Each dataset is resolved exactly
    like a one-dataset sweep (its own recipe, ``dasslite.recipes.RECIPES``), and all runs of all datasets form ONE plan
    executed by ONE runner (the GPU pool with ``--gpus``), so a free GPU never waits for another dataset to finish.
    Skip-if-done, resume and "nothing is deleted" are the one-dataset sweep's (the runners are the same). xd and dg
    keep their fixed target sets (one source); this module serves base2new and fewshot.

Pool order (longest first)
    A job's *cost* is an estimate in image passes: a training costs ``MAX_EPOCH × shots × classes trained on``
    (``OPTIM.MAX_EPOCH`` of the recipe, or of ``-- OPTIM.MAX_EPOCH N``), plus its final test; an evaluation costs its
    test images divided by ``EVAL_SPEEDUP`` (a forward pass without backward). Classes and test images per dataset
    come from ``DATASET_SIZES`` (CoOp's dataset table; base-to-new runs see half the classes and half the test set);
    a dataset not in that table counts as ``DEFAULT_SIZE``. Jobs are ordered by their critical path (own cost + the
    longest chain of jobs that wait for them), largest first: ImageNet's training before EuroSAT's, every
    evaluation after its training (the pool starts a job only when its dependencies succeeded). The estimate only
    orders the queue; nothing else depends on it.

Progress
    Before the plan, after every job start and at the end a line ``progress: D/N done (S skipped), R running, Q queued;
    ~T left`` is printed;
    ``T`` = the remaining jobs' cost × (seconds per cost unit of the runs finished in this sweep) / number of
    workers. Before the first run finishes the time left is unknown.

Table
    One table over all datasets: a row per dataset plus the Average, exactly as ``python -m dasslite.results
    base2new|fewshot``; ``--paper`` puts the published numbers beside it. Datasets without a complete run are listed
    as missing, never averaged. A trainer's per-dataset default recipes share one table (``PER_DATASET``).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os.path as osp
import re
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from dasslite.recipes import XD_DATASETS
from dasslite.results.base2new import Base2NewTable, Row, collect_base2new, format_base2new
from dasslite.results.cells import PER_DATASET, dataset_sort_key, read_cell, trained_check
from dasslite.results.compare import print_if_several
from dasslite.results.formatting import recipes_line
from dasslite.results.grid import GridRow, GridTable, format_grids
from dasslite.results.paper import load_paper
from dasslite.results.runs import NoResultsError, read_complete_record
from dasslite.sweep.jobs import Job, SweepUsageError
from dasslite.sweep.plans import REPO_ROOT, SweepSpec, plan
from dasslite.sweep.resolve import available_names, did_you_mean, resolve_spec
from dasslite.sweep.run import launcher_of, print_table_so_far, slurm_runner
from dasslite.sweep.runners import make_runner, parse_gpus
ALL = "all"
MULTI_PROTOCOLS = ("base2new", "fewshot")
# dataset -> (classes, test images), from CoOp's dataset table; only used to order the pool (see the docstring).
DATASET_SIZES: Dict[str, tuple] = {
    "imagenet": (1000, 50000), "caltech101": (100, 2465), "oxford_pets": (37, 3669), "stanford_cars": (196, 8041),
    "oxford_flowers": (102, 2463), "food101": (101, 30300), "fgvc_aircraft": (100, 3333), "sun397": (397, 19850),
    "dtd": (47, 1692), "eurosat": (10, 8100), "ucf101": (101, 3783), "demo": (10, 300)}
DEFAULT_SIZE = (100, 5000)
EVAL_SPEEDUP = 3.0
DEFAULT_MAX_EPOCH = 10  # dasslite.config.defaults OPTIM.MAX_EPOCH


def split_names(text: str) -> List[str]:
    """``"eurosat, dtd oxford_pets"`` -> ``["eurosat", "dtd", "oxford_pets"]``; ``all`` expands to XD_DATASETS."""
    names: List[str] = []
    for part in re.split(r"[,\s]+", str(text).strip()):
        if part:
            names += list(XD_DATASETS) if part == ALL else [part]
    return list(dict.fromkeys(names))


def is_multi(args) -> bool:
    """Whether a parsed sweep command names ``all`` or a list (even of one name: ``"eurosat,"``)."""
    if getattr(args, "protocol", None) not in MULTI_PROTOCOLS:
        return False
    text = str(getattr(args, "dataset", "") or "").strip()
    return text == ALL or re.search(r"[,\s]", text) is not None


def check_datasets(repo_root: str, names: Sequence[str]) -> None:
    """SweepUsageError listing every name without ``configs/datasets/<name>.yaml``, each with its close matches."""
    folder = osp.join(repo_root, "configs", "datasets")
    options = available_names(folder)
    unknown = [n for n in names if n not in options]
    if not names:
        raise SweepUsageError("no dataset given: --dataset all, or names separated by commas or spaces")
    if unknown:
        detail = "; ".join(f"{n!r}{did_you_mean(n, options)}" for n in unknown)
        raise SweepUsageError(f"unknown dataset(s) (no configs/datasets/<name>.yaml in {folder}): {detail} "
                              f"Nothing was run. Available: {ALL}, {', '.join(options) or '(none)'}")


def resolve_specs(args, environ=None, demo_world=None, cwd=None) -> List[SweepSpec]:
    """One SweepSpec per dataset of ``args.dataset`` (each resolved as a one-dataset sweep), after checking them all."""
    repo_root = osp.abspath(args.repo_root or REPO_ROOT)
    names = split_names(args.dataset)
    check_datasets(repo_root, names)
    specs = []
    for name in names:
        one = copy.copy(args)
        one.dataset = name
        specs.append(resolve_spec(one, environ=environ, demo_world=demo_world, cwd=cwd))
    return specs


def max_epoch(spec: SweepSpec) -> int:
    """``OPTIM.MAX_EPOCH`` of the run: the last one in the extra opts, else the recipe's, else Dassl's default."""
    for key, value in reversed(list(zip(spec.opts[::2], spec.opts[1::2]))):
        if key == "OPTIM.MAX_EPOCH":
            try:
                return int(value)
            except ValueError:
                break
    path = spec.config_file if osp.isabs(spec.config_file) else osp.join(spec.cwd or "", spec.config_file)
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        value = (data.get("OPTIM") or {}).get("MAX_EPOCH") if isinstance(data, dict) else None
        return int(value) if value else DEFAULT_MAX_EPOCH
    except (OSError, ValueError, TypeError, AttributeError, ImportError):
        return DEFAULT_MAX_EPOCH
    except Exception:  # a yaml error: the sweep reports bad configs elsewhere; the estimate only orders the queue
        return DEFAULT_MAX_EPOCH


def job_cost(spec: SweepSpec, job: Job) -> float:
    """Estimated image passes of one job (see the module docstring)."""
    classes, test_images = DATASET_SIZES.get(job.dataset, DEFAULT_SIZE)
    sub = job.expect.get("subsample_classes", "all")
    if sub in ("base", "new"):  # base-to-new: half the classes and half the test set
        classes, test_images = math.ceil(classes / 2), test_images / 2
    test = test_images / EVAL_SPEEDUP
    if job.eval_only:
        return float(test)
    shots = int(job.expect.get("num_shots", 16))
    return float(max_epoch(spec) * shots * classes + test)


def combine(specs: Sequence[SweepSpec]) -> tuple:
    """``(jobs, costs)``: every spec's plan with keys prefixed by the dataset, ordered for the pool."""
    jobs: List[Job] = []
    costs: Dict[str, float] = {}
    for spec in specs:
        prefix = f"{spec.dataset}/"
        for job in plan(spec):
            renamed = dataclasses.replace(job, key=prefix + job.key, depends_on=[prefix + d for d in job.depends_on])
            jobs.append(renamed)
            costs[renamed.key] = job_cost(spec, job)
    return order_for_pool(jobs, costs), costs


def order_for_pool(jobs: Sequence[Job], costs: Dict[str, float]) -> List[Job]:
    """Largest critical path first (cost + the longest chain waiting for the job); ties keep the plan's order.

    A job's path is strictly longer than any of its dependents' (costs are positive), so every job comes after the
    jobs it depends on: the sequential runner can run the list as is.
    """
    dependents: Dict[str, List[str]] = {j.key: [] for j in jobs}
    for job in jobs:
        for dep in job.depends_on:
            dependents.setdefault(dep, []).append(job.key)
    path: Dict[str, float] = {}

    def critical(key: str) -> float:
        if key not in path:
            path[key] = max(costs.get(key, 1.0), 1e-9) + max((critical(k) for k in dependents.get(key, [])),
                                                             default=0.0)
        return path[key]

    index = {j.key: i for i, j in enumerate(jobs)}
    return sorted(jobs, key=lambda j: (-critical(j.key), index[j.key]))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _Watched:
    """A started process whose first finished ``poll()`` is reported; everything else goes to the process."""

    def __init__(self, proc, on_exit: Callable[[int], None]) -> None:
        self._proc, self._on_exit, self._reported = proc, on_exit, False

    def poll(self):
        rc = self._proc.poll()
        if rc is not None and not self._reported:
            self._reported = True
            self._on_exit(rc)
        return rc

    def __getattr__(self, name):
        return getattr(self._proc, name)


class Progress:
    """Counts done / running / queued jobs of a plan and estimates the time left (see the module docstring).

    ``attach(runner)`` wraps the runner's launcher (SequentialRunner) or popen (GpuPoolRunner); the runners
    themselves are unchanged. "done" counts every job whose results.json is complete (skipped or finished now).
    """

    def __init__(self, jobs: Sequence[Job], costs: Dict[str, float], workers: int = 1, out=None,
                 clock: Callable[[], float] = time.time) -> None:
        self.jobs = list(jobs)
        self.costs = costs
        self.workers = max(1, workers)
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.started: Dict[str, float] = {}
        self.finished: Dict[str, tuple] = {}  # key -> (seconds, succeeded)
        self.skipped_at_start = {j.key for j in self.jobs if self._complete(j)}

    @staticmethod
    def _complete(job: Job) -> bool:
        return read_complete_record(job.results_path) is not None

    def start(self, job: Job) -> None:
        self.started[job.key] = self.clock()
        self.report()

    def finish(self, job: Job, rc) -> None:
        begun = self.started.get(job.key, self.clock())
        self.finished[job.key] = (self.clock() - begun, rc == 0 and self._complete(job))  # shown at the next start

    def counts(self) -> dict:
        running = [k for k in self.started if k not in self.finished]
        failed = [k for k, (_, ok) in self.finished.items() if not ok]
        done = [j.key for j in self.jobs if j.key not in running and j.key not in failed and self._complete(j)]
        queued = [j.key for j in self.jobs if j.key not in done and j.key not in running and j.key not in failed]
        return {"done": done, "running": running, "failed": failed, "queued": queued,
                "skipped": [k for k in done if k in self.skipped_at_start]}

    def seconds_left(self, counts: Optional[dict] = None) -> Optional[float]:
        """Remaining cost × seconds per cost unit of the runs finished so far / workers; None before any finished."""
        counts = counts or self.counts()
        ran = [(sec, self.costs.get(k, 1.0)) for k, (sec, ok) in self.finished.items() if ok]
        if not ran:
            return None
        rate = sum(s for s, _ in ran) / max(sum(c for _, c in ran), 1e-9)
        now = self.clock()
        left = sum(self.costs.get(k, 1.0) * rate for k in counts["queued"])
        left += sum(max(0.0, self.costs.get(k, 1.0) * rate - (now - self.started[k])) for k in counts["running"])
        return left / self.workers

    def line(self) -> str:
        c = self.counts()
        text = (f"progress: {len(c['done'])}/{len(self.jobs)} done ({len(c['skipped'])} skipped), "
                f"{len(c['running'])} running, {len(c['queued'])} queued")
        if c["failed"]:
            text += f", {len(c['failed'])} failed"
        left = self.seconds_left(c)
        if left is None:
            return text + "; time left: estimated once a run finishes"
        n = sum(1 for _, ok in self.finished.values() if ok)
        return text + f"; ~{_duration(left)} left (from {n} finished run{'s' if n != 1 else ''})"

    def report(self) -> None:
        print(self.line(), file=self.out, flush=True)

    def attach(self, runner):
        """Wrap ``runner``'s way of starting a job so every start and finish reports progress; returns ``runner``."""
        if hasattr(runner, "popen"):
            inner_popen = runner.popen

            def popen(job, *args, **kwargs):
                proc = inner_popen(job, *args, **kwargs)
                self.start(job)
                return _Watched(proc, lambda rc: self.finish(job, rc))

            runner.popen = popen
        elif hasattr(runner, "launcher"):
            inner_launcher = runner.launcher

            def launcher(job, *args, **kwargs):
                self.start(job)
                rc = None
                try:
                    rc = inner_launcher(job, *args, **kwargs)
                    return rc
                finally:
                    self.finish(job, rc)

            runner.launcher = launcher
        return runner


def print_pool_plan(jobs: Sequence[Job], costs: Dict[str, float], out) -> None:
    """The whole plan in pool order: position, state, dependencies, estimated cost, command."""
    width = len(str(len(jobs)))
    total = sum(costs.values()) or 1.0
    print(f"Pool order ({len(jobs)} runs, longest critical path first; cost = estimated image passes):", file=out)
    for i, job in enumerate(jobs, 1):
        cost = costs.get(job.key, 0.0)
        print(f"{i:>{width}}. [{job.key}] {job.plan_label()}; cost {cost:,.0f} ({100 * cost / total:.1f}%)", file=out)
        print(f"  $ {job.command()}", file=out)


def _merge_base2new(specs: Sequence[SweepSpec], ci95: bool) -> List[Base2NewTable]:
    """One base-to-new table over the specs' datasets (a row each, missing ones included)."""
    first = specs[0]
    by_cfg: Dict[str, List[str]] = {}
    for spec in specs:
        by_cfg.setdefault(spec.cfg, []).append(spec.dataset)
    rows = []
    for cfg, datasets in by_cfg.items():
        try:
            tables = collect_base2new(first.results_root, datasets=datasets, trainer=first.trainer,
                                      cfg=cfg, shots=first.shots[0], seeds=first.seeds, ci95=ci95)
            rows += [r for t in tables for r in t.rows]
        except NoResultsError:
            for ds in datasets:
                cells = [read_cell(osp.join(first.results_root, split, ds, f"shots_{first.shots[0]}",
                                            first.trainer, cfg), first.seeds,
                                   {"subsample_classes": sub}, "accuracy", ci95, False,
                                   check=trained_check(first.trainer, cfg, phase))
                         for split, sub, phase in (("train_base", "base", "train"), ("test_new", "new", "eval"))]
                rows.append(Row(ds, cells[0], cells[1], cfg))
    rows.sort(key=lambda r: dataset_sort_key(r.dataset))
    group = first.cfg if len(by_cfg) == 1 else PER_DATASET
    return [Base2NewTable(first.results_root, f"shots_{first.shots[0]}", first.trainer, group, rows,
                          ci95)]


def _merge_fewshot(specs: Sequence[SweepSpec], ci95: bool) -> List[GridTable]:
    """One few-shot table over the specs' datasets (absent datasets / shot counts are rows / cells of missing runs)."""
    first = specs[0]
    columns = [f"shots_{k}" for k in first.shots]
    rows = []
    for spec in specs:
        cells = {k: read_cell(osp.join(spec.results_root, spec.dataset, k, spec.trainer, spec.cfg),
                              spec.seeds, {"subsample_classes": "all",
                                           "num_shots": int(k[len("shots_"):])},
                              "accuracy", ci95, False,
                              check=trained_check(spec.trainer, spec.cfg, "train"))
                 for k in columns}
        rows.append(GridRow(spec.dataset, cells, spec.trainer, spec.cfg))
    rows.sort(key=lambda r: dataset_sort_key(r.label))
    group = first.cfg if len({s.cfg for s in specs}) == 1 else PER_DATASET
    return [GridTable("fewshot", first.results_root, first.trainer, group, "", "", columns, rows, ci95)]


def format_table(specs: Sequence[SweepSpec], ci95: bool = False, paper: Optional[dict] = None) -> str:
    """The protocol's table over every dataset of the sweep (a row per dataset + Average; missing ones listed)."""
    if specs[0].protocol == "base2new":
        return format_base2new(_merge_base2new(specs, ci95), paper=paper)
    return format_grids(_merge_fewshot(specs, ci95))


def describe(specs: Sequence[SweepSpec], n_jobs: int) -> str:
    first = specs[0]
    recipes = {s.cfg for s in specs}
    cfg = first.cfg if len(recipes) == 1 else "per-dataset recipes"
    shots = " ".join(map(str, first.shots))
    names = ", ".join(s.dataset for s in specs)
    seeds = " ".join(map(str, first.seeds))
    return (f"{first.protocol}: {first.trainer} / {cfg} on {len(specs)} datasets ({names}), shots {shots}, "
            f"seeds {seeds}: {n_jobs} runs in one plan; output: {first.results_root}")


def run_multi(args, environ=None, demo_world=None, runner=None, out=None, cwd=None) -> int:
    """``python -m dasslite.sweep base2new|fewshot --dataset all|LIST``: resolve, plan, run in one pool, table."""
    import os

    out = out if out is not None else sys.stdout
    environ = os.environ if environ is None else environ
    specs = resolve_specs(args, environ=environ, demo_world=demo_world, cwd=cwd)
    jobs, costs = combine(specs)
    print(describe(specs, len(jobs)), file=out)
    if len({s.cfg for s in specs}) > 1:
        print(recipes_line((s.dataset, s.cfg) for s in specs), file=out)
    if runner is None and launcher_of(args, environ) == "slurm":
        runner = slurm_runner(args, specs[0], environ, name="+".join(s.dataset for s in specs))
    if args.dry_run:
        print_pool_plan(jobs, costs, out)
        if hasattr(runner, "render"):  # the scheduler's job scripts
            print(runner.render(jobs), file=out)
        return 0
    if runner is None:
        gpus = parse_gpus(args.gpus if args.gpus is not None else environ.get("GPUS"))
        runner = make_runner(gpus, env=environ, out=out)
    workers = len(getattr(runner, "gpus", []) or [None])
    progress = Progress(jobs, costs, workers=workers, out=out)
    progress.report()
    progress.attach(runner)
    try:
        runner.run(jobs)
    finally:
        progress.report()
    print("", file=out)
    paper = load_paper() if getattr(args, "paper", False) else None
    if getattr(runner, "in_flight", None):  # submitted to SLURM, not waited for
        print_table_so_far(lambda: format_table(specs, ci95=args.ci95, paper=paper), out)
        return 0
    print(format_table(specs, ci95=args.ci95, paper=paper), file=out)

    print_if_several(specs[0].protocol, specs[0].results_root, out, shots=specs[0].shots,
                     datasets=[s.dataset for s in specs], seeds=specs[0].seeds, ci95=args.ci95, paper=paper)
    return 0
