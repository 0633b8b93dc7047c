"""Protocol sweeps behind ``scripts/``: plan the train.py runs of a protocol, run them, print the table.

    python -m dasslite.sweep base2new --trainer CoOp --dataset eurosat --shots 16 --seeds 1 2 3 \
        [--cfg vit_b16_ctxv1] [--data DATA] [--output output] [--load-epoch E] [--gpus 0,1] [--dry-run] \
        [-- KEY VALUE ...]

Base-to-new (CoCoOp's protocol, CoOp's folder layout), for each seed S:
  1. train on the base classes into  ``<output>/base2new/train_base/<ds>/shots_<K>/<T>/<cfg>/seed<S>``
     (opts ``DATASET.NUM_SHOTS K DATASET.SUBSAMPLE_CLASSES base``);
  2. ``--eval-only`` on the new classes from that model dir into ``<output>/base2new/test_new/...``
     (``DATASET.SUBSAMPLE_CLASSES new``; the latest checkpoint unless ``--load-epoch``).
  Zero-shot trainers (ZeroshotCLIP, ZeroshotCLIP2, or ``--zero-shot``) train nothing: both steps are
  ``--eval-only`` runs without a model dir, on base (into ``train_base/``) and on new (into ``test_new/``).
Then the Base / New / H table of those seeds is printed (``dasslite.results``).

Re-running is safe:
  * a run whose ``results.json`` is complete is skipped ("Results exist in DIR (complete); skipping");
    if that record names another trainer, seed, subsample or shot count, the sweep stops instead of reusing it;
  * an existing folder without a complete ``results.json`` is re-run *into the same folder*: train.py resumes
    from the last checkpoint there (Dassl semantics) and an evaluation is simply repeated. Nothing is deleted;
  * a train.py that fails (non-zero exit, or exit 0 without a complete results.json) stops the sweep with an
    error naming the run folder and its log.txt; the sweep exits non-zero. Re-run the same command to continue.

Extra ``KEY VALUE`` opts after ``--`` go to every run. They do not change the folder names, so a finished run
made with other opts is still skipped: use a different ``--output`` (or ``--cfg``) for a variant.

Dataset ``demo`` uses the offline demo world (``dasslite.demo.ensure_demo_world()``): its root is the data root,
``MODEL.BACKBONE.NAME`` is set to its tiny CLIP, and ``--cfg`` defaults to ``demo``. Real datasets read
``configs/datasets/<ds>.yaml`` and ``--data`` (default: ``$DATA``).

Jobs: the plan is a list of :class:`Job` (the argv, the output dir, dependencies); a runner executes it.
``SequentialRunner`` runs one job at a time with the console attached. With ``--gpus 0,1,2,3`` (or ``GPUS=...``)
and more than one id, ``GpuPoolRunner`` runs one job per GPU (``CUDA_VISIBLE_DEVICES``), queueing the rest and
starting an evaluation only after its training succeeded; each job's console goes to ``<run dir>/console.txt``.
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

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ZERO_SHOT_TRAINERS = ("ZeroshotCLIP", "ZeroshotCLIP2")
DEFAULT_CFGS = {"CoOp": "vit_b16_ctxv1", "LASP": "vit_b16_c4_ep25_batch32_cls_t2t_5_wcl_25_g1_b_lr32",
                "ZeroshotCLIP": "vit_b16", "ZeroshotCLIP2": "vit_b16",
                "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1", "KgCoOp": "vit_b16_ep100_ctxv1"}
# trainers without their own configs/trainers/<T>/ folder borrow another's recipes
CONFIG_FOLDER_FALLBACK = {"ZeroshotCLIP2": "ZeroshotCLIP"}
DEMO_DATASET = "demo"
CONSOLE_FILE = "console.txt"


class SweepError(RuntimeError):
    """A run failed, or a finished run belongs to another protocol: the sweep stops (exit status 1)."""


class SweepUsageError(SweepError):
    """Bad arguments or a missing config/data folder (exit status 2)."""


# ------------------------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One train.py invocation. ``key`` is unique in a plan; ``depends_on`` lists keys that must succeed first."""

    key: str
    phase: str  # "train_base" | "test_new"
    seed: int
    output_dir: str
    argv: List[str]
    eval_only: bool
    expect: Dict[str, object] = field(default_factory=dict)  # results.json fields a finished run must match
    depends_on: List[str] = field(default_factory=list)
    cwd: Optional[str] = None

    @property
    def log_path(self) -> str:
        return osp.join(self.output_dir, results_mod.LOG_FILE)

    @property
    def results_path(self) -> str:
        return osp.join(self.output_dir, results_mod.RESULTS_FILE)

    def state(self) -> str:
        """``done`` (complete results.json), ``resume`` (folder exists, incomplete) or ``new``.

        Raises SweepError when a complete record disagrees with ``expect`` (a run of another protocol).
        """
        record = read_complete_record(self.results_path)
        if record is not None:
            wrong = {k: (record[k], v) for k, v in self.expect.items() if k in record and record[k] != v}
            if wrong:
                detail = ", ".join(f"{k}={got!r} (expected {want!r})" for k, (got, want) in wrong.items())
                raise SweepError(f"{self.results_path} belongs to another run: {detail}. "
                                 f"Move that folder away or use another --output.")
            return "done"
        if osp.isdir(self.output_dir) and os.listdir(self.output_dir):
            return "resume"
        return "new"

    def command(self) -> str:
        return shlex.join(self.argv)


def read_complete_record(path: str) -> Optional[dict]:
    """The results.json at ``path`` if it exists, parses and says ``"complete": true``; else None."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("complete") is True else None


@dataclass
class Base2NewSpec:
    """Everything a base-to-new plan depends on, already resolved to paths."""

    trainer: str
    cfg: str
    dataset: str
    shots: int
    seeds: List[int]
    data_root: str
    dataset_config_file: str
    config_file: str
    output: str = "output"
    load_epoch: Optional[int] = None
    opts: List[str] = field(default_factory=list)  # added to every run (demo backbone + the user's extras)
    zero_shot: bool = False
    python: str = sys.executable
    train_py: str = osp.join(REPO_ROOT, "train.py")
    cwd: Optional[str] = None

    def run_dir(self, phase: str, seed: int) -> str:
        return osp.join(self.output, "base2new", phase, self.dataset, f"shots_{self.shots}", self.trainer, self.cfg,
                        f"seed{seed}")

    @property
    def results_root(self) -> str:
        return osp.join(self.output, "base2new")


def plan_base2new(spec: Base2NewSpec) -> List[Job]:
    """The jobs of a base-to-new sweep, seed by seed: train_base (or zero-shot eval on base), then test_new."""
    jobs = []
    for seed in spec.seeds:
        common = [spec.python, spec.train_py, "--root", spec.data_root, "--seed", str(seed), "--trainer",
                  spec.trainer, "--dataset-config-file", spec.dataset_config_file, "--config-file", spec.config_file]
        shots = ["DATASET.NUM_SHOTS", str(spec.shots)]
        base_dir, new_dir = spec.run_dir("train_base", seed), spec.run_dir("test_new", seed)
        expect = {"trainer": spec.trainer, "seed": seed, "num_shots": spec.shots}
        base_argv = common + ["--output-dir", base_dir]
        if spec.zero_shot:
            base_argv += ["--eval-only"]
        base_argv += shots + ["DATASET.SUBSAMPLE_CLASSES", "base"] + list(spec.opts)
        base = Job(f"train_base/seed{seed}", "train_base", seed, base_dir, base_argv, spec.zero_shot,
                   {**expect, "subsample_classes": "base"}, cwd=spec.cwd)
        new_argv = common + ["--output-dir", new_dir, "--eval-only"]
        depends = []
        if not spec.zero_shot:
            new_argv += ["--model-dir", base_dir]
            if spec.load_epoch is not None:
                new_argv += ["--load-epoch", str(spec.load_epoch)]
            depends = [base.key]
        new_argv += shots + ["DATASET.SUBSAMPLE_CLASSES", "new"] + list(spec.opts)
        new = Job(f"test_new/seed{seed}", "test_new", seed, new_dir, new_argv, True,
                  {**expect, "subsample_classes": "new"}, depends, cwd=spec.cwd)
        jobs += [base, new]
    return jobs


# ------------------------------------------------------------------------------------------------------------
# Runners
# ------------------------------------------------------------------------------------------------------------
def _describe(job: Job) -> str:
    what = "evaluate" if job.eval_only else "train"
    sub = job.expect.get("subsample_classes", "")
    return f"[{job.key}] {what} on {sub} classes -> {job.output_dir}"


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
    return subprocess.run(job.argv, cwd=job.cwd, env=env).returncode


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

    On a failure no new job starts, the running ones finish, and a SweepError reports every failure.
    ``popen(job, env, console_path)`` returns an object with ``poll()`` (default: ``subprocess.Popen``).
    """

    def __init__(self, gpus: Sequence[str], popen=_popen_launcher, env: Optional[Dict[str, str]] = None, out=None,
                 poll_interval: float = 0.5) -> None:
        if not gpus:
            raise SweepUsageError("GpuPoolRunner needs at least one GPU id")
        self.gpus = list(gpus)
        self.popen = popen
        self.env = dict(os.environ if env is None else env)
        self.out = out if out is not None else sys.stdout
        self.poll_interval = poll_interval

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
        except KeyboardInterrupt:
            for job, proc, _, _ in running.values():
                proc.terminate()
            raise
        if failures:
            not_started = [j.key for j in pending]
            msg = "\n\n".join(str(f) for f in failures)
            if not_started:
                msg += f"\nNot started: {', '.join(not_started)}"
            raise SweepError(msg)
        return outcome


def parse_gpus(text: Optional[str]) -> List[str]:
    """``"0,1, 2"`` -> ``["0", "1", "2"]``; empty or None -> ``[]``."""
    if not text:
        return []
    return [g.strip() for g in text.replace(" ", ",").split(",") if g.strip()]


def make_runner(gpus: Sequence[str], env: Optional[Dict[str, str]] = None, out=None):
    """More than one GPU id -> the pool; exactly one -> sequential on that GPU; none -> sequential as is."""
    env = dict(os.environ if env is None else env)
    if len(gpus) > 1:
        return GpuPoolRunner(gpus, env=env, out=out)
    if len(gpus) == 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[0]
    return SequentialRunner(env=env, out=out)


# ------------------------------------------------------------------------------------------------------------
# Resolving the command line
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


def resolve_base2new(args, environ: Optional[Dict[str, str]] = None,
                     demo_world: Optional[Callable[[], object]] = None, cwd: Optional[str] = None) -> Base2NewSpec:
    """Turn parsed CLI arguments into a spec: config files, data root (demo world or $DATA), defaults."""
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    repo_root = osp.abspath(args.repo_root or REPO_ROOT)
    train_py = osp.abspath(args.train_py or osp.join(repo_root, "train.py"))
    if not osp.isfile(train_py):
        raise SweepUsageError(f"train.py not found at {train_py} (use --train-py or --repo-root)")
    zero_shot = args.zero_shot or args.trainer in ZERO_SHOT_TRAINERS
    is_demo = args.dataset == DEMO_DATASET

    cfg = args.cfg or (DEMO_DATASET if is_demo else DEFAULT_CFGS.get(args.trainer))
    if not cfg:
        raise SweepUsageError(f"--cfg is required for trainer {args.trainer} (a recipe name in "
                              f"configs/trainers/{args.trainer}/)")
    ds_folder = osp.join(repo_root, "configs", "datasets")
    ds_cfg = osp.join(ds_folder, f"{args.dataset}.yaml")
    if not osp.isfile(ds_cfg):
        options = _available(ds_folder)
        raise SweepUsageError(f"no dataset config {ds_cfg}.{_did_you_mean(args.dataset, options)} "
                              f"Available: {', '.join(options) or '(none)'}")
    if args.config_file:
        tr_cfg = osp.abspath(args.config_file)
        if not osp.isfile(tr_cfg):
            raise SweepUsageError(f"no trainer config {tr_cfg}")
    else:
        folders = [args.trainer] + ([CONFIG_FOLDER_FALLBACK[args.trainer]]
                                    if args.trainer in CONFIG_FOLDER_FALLBACK else [])
        candidates = [osp.join(repo_root, "configs", "trainers", f, f"{cfg}.yaml") for f in folders]
        tr_cfg = next((c for c in candidates if osp.isfile(c)), None)
        if tr_cfg is None:
            options = _available(osp.join(repo_root, "configs", "trainers", folders[-1]))
            raise SweepUsageError(f"no trainer config {candidates[0]}.{_did_you_mean(cfg, options)} "
                                  f"Available for {folders[-1]}: {', '.join(options) or '(none)'}")

    opts: List[str] = []
    if is_demo:
        if demo_world is None:
            from dasslite.demo import ensure_demo_world as demo_world
        print("Preparing the offline demo world (built once, then cached) ...", flush=True)
        world = demo_world()
        data_root = str(world.root)
        opts += ["MODEL.BACKBONE.NAME", str(world.clip_checkpoint)]
    else:
        data_root = args.data or environ.get("DATA", "")
        if not data_root:
            raise SweepUsageError("no data root: pass --data DIR or set DATA=/path/to/datasets "
                                  "(CoOp's layout; the 'demo' dataset needs none)")
        if not osp.isdir(data_root):
            raise SweepUsageError(f"data root {data_root} does not exist (from {'--data' if args.data else '$DATA'})")
        data_root = osp.abspath(data_root)
    if len(args.extra_opts) % 2:
        raise SweepUsageError(f"extra opts must be KEY VALUE pairs, got {args.extra_opts}")
    opts += list(args.extra_opts)
    seeds = list(dict.fromkeys(args.seeds))
    if any(s < 0 for s in seeds):
        raise SweepUsageError(f"seeds must be >= 0, got {seeds}")
    return Base2NewSpec(trainer=args.trainer, cfg=cfg, dataset=args.dataset, shots=args.shots, seeds=seeds,
                        data_root=data_root, dataset_config_file=_rel(ds_cfg, cwd), config_file=_rel(tr_cfg, cwd),
                        output=args.output, load_epoch=args.load_epoch, opts=opts, zero_shot=zero_shot,
                        python=args.python or sys.executable, train_py=train_py, cwd=cwd)


def _seed_list(values: Sequence[str]) -> List[int]:
    seeds = []
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                seeds.append(int(part))
            except ValueError:
                raise SweepUsageError(f"not a seed: {part!r}") from None
    if not seeds:
        raise SweepUsageError("no seeds given")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="protocol", required=True)
    b = sub.add_parser("base2new", help="train on base classes, evaluate on new classes, print Base/New/H",
                       description="Everything after a lone '--' is passed to every train.py run as KEY VALUE opts.")
    b.add_argument("--trainer", default="CoOp", help="trainer name (default: %(default)s)")
    b.add_argument("--dataset", required=True, help="dataset config name in configs/datasets/ (or 'demo')")
    b.add_argument("--cfg", default=None, help="recipe in configs/trainers/<trainer>/ (default: demo for the demo "
                                              "dataset, else " + ", ".join(f"{k}: {v}" for k, v in
                                                                           DEFAULT_CFGS.items()) + ")")
    b.add_argument("--config-file", default=None, help="explicit trainer config path (overrides --cfg's lookup; "
                                                       "--cfg still names the output folder)")
    b.add_argument("--shots", type=int, default=16, help="shots per base class (default: %(default)s)")
    b.add_argument("--seeds", nargs="+", default=["1", "2", "3"], help="seeds (default: 1 2 3; '1,2' works too)")
    b.add_argument("--data", default=None, help="dataset root (default: $DATA; not needed for demo)")
    b.add_argument("--output", default="output", help="output root (default: %(default)s)")
    b.add_argument("--load-epoch", type=int, default=None,
                   help="checkpoint epoch for the new-class evaluation (default: the latest)")
    b.add_argument("--zero-shot", action="store_true",
                   help="treat the trainer as zero-shot (eval-only on base and new); implied for "
                        + ", ".join(ZERO_SHOT_TRAINERS))
    b.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1,2,3: one job per GPU (default: $GPUS)")
    b.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    b.add_argument("--ci95", action="store_true", help="the final table shows 95%% CIs instead of std")
    b.add_argument("--repo-root", default=None, help=argparse.SUPPRESS)
    b.add_argument("--train-py", default=None, help="train.py to run (default: the repository's)")
    b.add_argument("--python", default=None, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str]):
    argv = list(argv)
    extra: List[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    args.extra_opts = extra
    if args.protocol == "base2new":
        args.seeds = _seed_list(args.seeds)
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


def run_base2new(spec: Base2NewSpec, runner=None, dry_run: bool = False, ci95: bool = False, out=None) -> int:
    out = out if out is not None else sys.stdout
    jobs = plan_base2new(spec)
    kind = "zero-shot eval" if spec.zero_shot else "train base -> eval new"
    print(f"base2new: {spec.trainer} / {spec.cfg} on {spec.dataset}, {spec.shots} shots, seeds "
          f"{' '.join(map(str, spec.seeds))} ({kind}); data: {spec.data_root}; output: {spec.results_root}",
          file=out)
    if dry_run:
        print_plan(jobs, out)
        return 0
    runner = runner if runner is not None else make_runner([], out=out)
    runner.run(jobs)
    tables = results_mod.collect_base2new(spec.results_root, datasets=[spec.dataset], trainer=spec.trainer,
                                          cfg=spec.cfg, shots=spec.shots, seeds=spec.seeds, ci95=ci95)
    print("", file=out)
    print(results_mod.format_base2new(tables), file=out)
    return 0


def main(argv: Optional[Sequence[str]] = None, demo_world=None, runner=None, environ=None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        spec = resolve_base2new(args, environ=environ, demo_world=demo_world)
        if runner is None and not args.dry_run:
            runner = make_runner(parse_gpus(args.gpus if args.gpus is not None else environ.get("GPUS")), env=environ)
        return run_base2new(spec, runner=runner, dry_run=args.dry_run, ci95=args.ci95)
    except SweepUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepError, results_mod.NoResultsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; re-run the same command to continue (finished runs are skipped)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
