"""SLURM launcher for the protocol sweeps: the planned train.py runs as ``sbatch`` job arrays, one task per run.

    LAUNCHER=slurm bash scripts/mocoop/base2new.sh eurosat 16 [SEEDS] [--partition gpu --wait ...]
    python -m dasslite.sweep base2new --trainer MoCoOp --dataset eurosat --launcher slurm [--wait] ...

Why job arrays (not one ``sbatch`` per run, nor submitit): an array is one submission per dependency level, the
scheduler's own ``%N`` caps how many tasks run at once, and the task body stays the plain train.py command a
user can read and rerun by hand. The plan is cut into levels: level 0 holds the runs that wait for nothing (the
trainings), level L the runs whose dependencies are at most at level L-1 (the evaluations). Level L is submitted
with ``--dependency=afterok:<level L-1 array>`` and ``--kill-on-invalid-dep=yes``: a failed training cancels the
evaluations after it instead of leaving them pending forever.

The local runners' guarantees hold:
  * a run whose ``results.json`` is complete is skipped before submission; a run whose folder records a SLURM task
    that is still pending or running (``slurm_job.json``, checked with ``squeue``) is not submitted twice;
  * an unfinished run is re-run into its folder, where train.py resumes from its last checkpoint; nothing is
    deleted. Tasks are submitted with ``--requeue``: a preempted or requeued task starts again and resumes the same
    way (its console, ``<run dir>/console.txt``, is appended to, each start headed by its SLURM ids);
  * with ``--wait`` the sweep blocks until every task has left the queue, then reports each run without a complete
    ``results.json``: its error (the console's last lines), its console and the SLURM log, or the training it
    waited for. Without ``--wait`` it prints what was submitted and returns; running the same command again later
    prints the table from what is done (and submits nothing that is queued, running or finished).

Options (flag, or environment variable for the scripts): ``--partition`` (SWEEP_PARTITION), ``--account``
(SWEEP_ACCOUNT), ``--time`` (SWEEP_TIME, e.g. 4:00:00), ``--gpus-per-task`` (SWEEP_GPUS_PER_TASK),
``--cpus-per-task`` (SWEEP_CPUS_PER_TASK), ``--mem`` (SWEEP_MEM, e.g. 32G), ``--sbatch-line`` (repeatable; SWEEP_SBATCH,
lines separated by ';'), ``--max-concurrent`` (SWEEP_MAX_CONCURRENT), ``--wait`` (SWEEP_WAIT=1; ``squeue`` is polled
every SWEEP_POLL seconds, default 10). sbatch's own input
variables (SBATCH_QOS, SBATCH_EXCLUSIVE, ...) apply as usual. ``--dry-run`` prints the job scripts and submits nothing.
Each submission's files live in ``<output>/<protocol>/.slurm/<time>-<pid>/level<L>/``: ``job.sbatch``, ``tasks.json``
and ``logs/<array>_<task>.out``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from dasslite.results.runs import read_complete_record
from dasslite.sweep.jobs import CONSOLE_FILE, SweepError
from dasslite.sweep.runners import announce_state, failure_error
from dasslite.utils.io import write_json_atomic, write_text_atomic
MARKER_FILE = "slurm_job.json"  # in a run folder: the SLURM task that owns the run
ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED")
ENV_OPTIONS = {  # flag dest -> environment variable the scripts set
    "partition": "SWEEP_PARTITION", "account": "SWEEP_ACCOUNT", "time": "SWEEP_TIME",
    "gpus_per_task": "SWEEP_GPUS_PER_TASK", "cpus_per_task": "SWEEP_CPUS_PER_TASK", "mem": "SWEEP_MEM",
    "max_concurrent": "SWEEP_MAX_CONCURRENT",
}
LAUNCHERS = ("local", "slurm")
PACKAGE_PARENT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the folder that holds this dasslite


class SlurmError(RuntimeError):
    """sbatch / squeue failed or is missing (the sweep maps it to its own errors)."""


@dataclass
class SlurmOptions:
    """What goes into every task's ``#SBATCH`` header, and whether the sweep waits for the arrays."""

    partition: Optional[str] = None
    account: Optional[str] = None
    time: Optional[str] = None
    gpus_per_task: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem: Optional[str] = None
    extra_lines: List[str] = field(default_factory=list)
    max_concurrent: Optional[int] = None
    wait: bool = False
    job_name: str = "dasslite"
    poll_interval: float = 10.0

    def header(self) -> List[str]:
        """The ``#SBATCH`` lines every array gets (the array range, dependency and log path are added per level)."""
        lines = [f"--job-name={self.job_name}", "--requeue", "--open-mode=append"]
        for name, value in (("partition", self.partition), ("account", self.account), ("time", self.time),
                            ("gpus-per-task", self.gpus_per_task), ("cpus-per-task", self.cpus_per_task),
                            ("mem", self.mem)):
            if value not in (None, ""):
                lines.append(f"--{name}={value}")
        for line in self.extra_lines:
            line = line.strip()
            if line.startswith("#SBATCH"):
                line = line[len("#SBATCH"):].strip()
            if line:
                lines.append(line if line.startswith("-") else f"--{line}")  # "qos=high" -> "--qos=high"
        return [f"#SBATCH {line}" for line in lines]


def add_slurm_args(p: argparse.ArgumentParser) -> None:
    """The launcher flags every protocol of ``python -m dasslite.sweep`` takes."""
    g = p.add_argument_group("launcher (LAUNCHER=slurm in the scripts)")
    g.add_argument("--launcher", choices=LAUNCHERS, default=None,
                   help="local (default: sequential or the GPU pool) or slurm (sbatch job arrays); default $LAUNCHER")
    g.add_argument("--partition", default=None, help="SLURM partition (default: $SWEEP_PARTITION)")
    g.add_argument("--account", default=None, help="SLURM account (default: $SWEEP_ACCOUNT)")
    g.add_argument("--time", default=None, help="time limit per task, e.g. 4:00:00 (default: $SWEEP_TIME)")
    g.add_argument("--gpus-per-task", default=None, help="GPUs per task (default: $SWEEP_GPUS_PER_TASK)")
    g.add_argument("--cpus-per-task", default=None, help="CPUs per task (default: $SWEEP_CPUS_PER_TASK)")
    g.add_argument("--mem", default=None, help="memory per task, e.g. 32G (default: $SWEEP_MEM)")
    g.add_argument("--sbatch-line", action="append", default=None,
                   help="extra #SBATCH option, repeatable: qos=high or --sbatch-line=--qos=high "
                        "(default: $SWEEP_SBATCH, separated by ';')")
    g.add_argument("--max-concurrent", default=None,
                   help="at most this many tasks of an array run at once (default: $SWEEP_MAX_CONCURRENT)")
    g.add_argument("--wait", action="store_true", default=None,
                   help="block until the arrays end, then print the table (default: $SWEEP_WAIT=1)")


def _positive_int(value, what: str, source: str) -> Optional[int]:
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{source} must be a positive whole number ({what}), got {value!r}")
    return number


def launcher_from(args, environ: Dict[str, str]) -> str:
    """``--launcher``, else ``$LAUNCHER``, else local; anything else names the choices."""
    launcher = getattr(args, "launcher", None) or environ.get("LAUNCHER") or "local"
    if launcher not in LAUNCHERS:
        raise ValueError(f"LAUNCHER={launcher!r} is not one of {', '.join(LAUNCHERS)}")
    return launcher


def options_from(args, environ: Dict[str, str]) -> SlurmOptions:
    """Flags first, then the SWEEP_* environment variables; numbers are checked here, naming the flag/variable."""
    values = {}
    for dest, var in ENV_OPTIONS.items():
        flag = getattr(args, dest, None)
        values[dest] = flag if flag not in (None, "") else environ.get(var) or None
        source = f"--{dest.replace('_', '-')}" if flag not in (None, "") else var
        if dest in ("gpus_per_task", "cpus_per_task", "max_concurrent"):
            values[dest] = _positive_int(values[dest], dest.replace("_", " "), source)
    lines = getattr(args, "sbatch_line", None)
    if lines is None:
        lines = [x for x in environ.get("SWEEP_SBATCH", "").split(";") if x.strip()]
    wait = getattr(args, "wait", None)
    if wait is None:
        wait = environ.get("SWEEP_WAIT", "").strip().lower() in ("1", "true", "yes")
    try:
        poll = float(environ.get("SWEEP_POLL", "10"))
    except ValueError:
        raise ValueError(f"SWEEP_POLL must be a number of seconds, got {environ.get('SWEEP_POLL')!r}") from None
    return SlurmOptions(extra_lines=list(lines), wait=bool(wait), poll_interval=poll, **values)


class SlurmClient:
    """``sbatch`` and ``squeue`` through subprocess; one place to swap the commands (e.g. ``SBATCH=...``)."""

    def __init__(self, env: Optional[Dict[str, str]] = None, sbatch: str = "sbatch", squeue: str = "squeue"):
        self.env = dict(os.environ if env is None else env)
        self.sbatch_cmd = self.env.get("SWEEP_SBATCH_CMD", sbatch)
        self.squeue_cmd = self.env.get("SWEEP_SQUEUE_CMD", squeue)

    def _run(self, argv: List[str]) -> str:
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        except FileNotFoundError:
            raise SlurmError(f"{argv[0]} not found: the slurm launcher needs SLURM's client commands on PATH "
                             f"(run the sweep on a login node, or use the local launcher)") from None
        if proc.returncode != 0:
            raise SlurmError(f"{shlex.join(argv)} failed (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def submit(self, script: str, dependency: Optional[str] = None) -> str:
        """Submit ``script``; returns the (array) job id."""
        argv = [self.sbatch_cmd, "--parsable"]
        if dependency:
            argv += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
        out = self._run(argv + [script]).strip()
        job_id = out.split(";")[0].strip()
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed {out!r} instead of a job id for {script}")
        return job_id

    def active(self) -> Dict[str, str]:
        """``{"<array>_<task>" or "<job>": state}`` for this user's jobs still known to the queue."""
        out = self._run([self.squeue_cmd, "--me", "-h", "-r", "-o", "%i|%T"])
        states = {}
        for line in out.splitlines():
            if "|" in line:
                job, state = line.split("|", 1)
                states[job.strip()] = state.strip()
        return states


def dependency_levels(jobs: Sequence, satisfied: Sequence[str]) -> List[List]:
    """Cut ``jobs`` into levels: a job's level is 1 + the highest level of its unsatisfied dependencies (0 if none)."""
    level: Dict[str, int] = {}
    by_key = {j.key: j for j in jobs}
    done = set(satisfied)

    def level_of(job, trail=()) -> int:
        if job.key in level:
            return level[job.key]
        if job.key in trail:
            raise ValueError(f"dependency cycle through {job.key}")
        deps = [by_key[d] for d in job.depends_on if d not in done and d in by_key]
        level[job.key] = 1 + max((level_of(d, trail + (job.key,)) for d in deps), default=-1)
        return level[job.key]

    levels: List[List] = []
    for job in jobs:
        n = level_of(job)
        while len(levels) <= n:
            levels.append([])
        levels[n].append(job)
    return levels


def render_script(options: SlurmOptions, n_tasks: int, tasks_file: str, log_dir: str, python: str) -> str:
    """The job array's script: the header, then the task body (``python -m dasslite.sweep.slurm_task ...``)."""
    cap = f"%{options.max_concurrent}" if options.max_concurrent else ""
    lines = ["#!/usr/bin/env bash", *options.header(), f"#SBATCH --array=0-{n_tasks - 1}{cap}",
             f"#SBATCH --output={osp.join(log_dir, '%A_%a.out')}",
             "# One train.py run per array task; the run list is tasks.json beside this script.",
             "set -euo pipefail",
             f"export PYTHONPATH={shlex.quote(PACKAGE_PARENT)}${{PYTHONPATH:+:$PYTHONPATH}}  # the submitter's "
             "dasslite",
             f"exec {shlex.quote(python)} -m dasslite.sweep.slurm_task "
             f"{shlex.quote(tasks_file)} \"$SLURM_ARRAY_TASK_ID\""]
    return "\n".join(lines) + "\n"


def read_marker(run_dir: str) -> Optional[dict]:
    try:
        with open(osp.join(run_dir, MARKER_FILE), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("job_id") else None


class SlurmRunner:
    """Submit a plan as job arrays (see the module docstring). ``run(jobs)`` -> ``{key: outcome}`` where outcome is
    ``skipped`` (complete before), ``queued`` (already in SLURM), ``submitted`` (not waited for) or ``ran``."""

    def __init__(self, options: SlurmOptions, client: Optional[SlurmClient] = None, out=None,
                 python: str = sys.executable, state_root: Optional[str] = None) -> None:
        self.options = options
        self.state_root = state_root
        self.client = client if client is not None else SlurmClient()
        self.out = out if out is not None else sys.stdout
        self.python = python
        self.in_flight: List[str] = []  # job ids of runs not finished when run() returned (no --wait)

    # -- planning -------------------------------------------------------------------------------------------
    def _classify(self, jobs: Sequence) -> tuple:
        """(skipped keys, {key: queued SLURM id}, jobs to submit); announces each skip."""
        skipped, queued, todo = [], {}, []
        active = None
        for job in jobs:
            # a task of ours still queued or running owns the run (its train.py may hold the run's lock): not again
            marker = read_marker(job.output_dir)
            if marker is not None and read_complete_record(job.results_path) is None:
                if active is None:
                    active = self.client.active()
                if active.get(marker["job_id"]) in ACTIVE_STATES:
                    print(f"[{job.key}] already in SLURM as {marker['job_id']} ({active[marker['job_id']].lower()}); "
                          f"not submitted again", file=self.out)
                    queued[job.key] = marker["job_id"]
                    continue
            state = job.state()
            announce_state(job, state, self.out)
            if state == "done":
                skipped.append(job.key)
            else:
                todo.append(job)
        return skipped, queued, todo

    @staticmethod
    def _arrays(todo: Sequence, queued: Dict[str, str]) -> List[tuple]:
        """``[(jobs, dependency keys)]`` in submission order: one array per (level, set of runs waited for).

        SLURM dependencies hold for a whole array, so runs that wait for different trainings go into different
        arrays (base2new: each seed's evaluation; xd: each seed's targets together); runs that wait for nothing
        form one array, capped by ``--max-concurrent``.
        """
        pending = {j.key for j in todo} | set(queued)
        groups: Dict[tuple, List] = {}
        for n, level in enumerate(dependency_levels(todo, [])):
            for job in level:
                deps = tuple(sorted(d for d in job.depends_on if d in pending))
                groups.setdefault((n, deps), []).append(job)
        return [(jobs, deps) for (_, deps), jobs in groups.items()]

    def _array_dir(self, jobs: Sequence, stamp: str, n: int) -> str:
        """``<state root>/.slurm/<stamp>/array<n>``; the state root is the protocol's results root when the sweep
        gives it, else the run folders' common parent."""
        root = self.state_root or osp.commonpath([osp.dirname(osp.abspath(j.output_dir)) for j in jobs])
        return osp.join(root, ".slurm", stamp, f"array{n}")

    def render(self, jobs: Sequence) -> str:
        """The job scripts ``run`` would submit, as text (``--dry-run``); writes and submits nothing."""
        _, queued, todo = self._classify(jobs)
        if not todo:
            return "# nothing to submit: every run is complete or already in SLURM\n"
        parts = []
        for n, (array, deps) in enumerate(self._arrays(todo, queued)):
            folder = self._array_dir(array, "<time>", n)
            after = f" (sbatch --dependency=afterok:<{' '.join(deps)}> --kill-on-invalid-dep=yes)" if deps else ""
            parts.append(f"# array {n}: {len(array)} task(s){after}: {', '.join(j.key for j in array)}")
            parts.append(render_script(self.options, len(array), osp.join(folder, "tasks.json"),
                                       osp.join(folder, "logs"), self.python))
        return "\n".join(parts)

    # -- running --------------------------------------------------------------------------------------------
    def run(self, jobs: Sequence) -> Dict[str, str]:
        keys = {j.key for j in jobs}
        for job in jobs:
            unknown = [d for d in job.depends_on if d not in keys]
            if unknown:
                raise SweepError(f"{job.key} depends on unknown jobs {unknown}")
        try:
            skipped, queued, todo = self._classify(jobs)
            outcome = {k: "skipped" for k in skipped}
            outcome.update({k: "queued" for k in queued})
            submitted = self._submit(todo, queued) if todo else {}
        except SlurmError as exc:
            raise SweepError(str(exc)) from None
        outcome.update({k: "submitted" for k in submitted})
        in_flight = {**queued, **submitted}
        if not in_flight:
            return outcome
        if not self.options.wait:
            self.in_flight = sorted(set(in_flight.values()))
            print(f"{len(in_flight)} run(s) in SLURM ({', '.join(self.in_flight)}); not waiting (--wait blocks). "
                  f"Run the same command again later: finished runs are skipped, queued ones are not submitted "
                  f"twice, and the table shows what is done.", file=self.out)
            return outcome
        self._wait(in_flight)
        failures = self._report(jobs, in_flight)
        if failures:
            raise SweepError("\n\n".join(failures))
        outcome.update({k: "ran" for k in in_flight})
        return outcome

    def _submit(self, todo: Sequence, queued: Dict[str, str]) -> Dict[str, str]:
        """Write and submit the arrays; returns ``{key: "<array>_<task>"}`` and marks each run folder."""
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        ids = dict(queued)  # key -> SLURM task id, for the dependencies of later arrays
        submitted: Dict[str, str] = {}
        for n, (array, deps) in enumerate(self._arrays(todo, queued)):
            folder = self._array_dir(array, stamp, n)
            tasks_file = osp.join(folder, "tasks.json")
            log_dir = osp.join(folder, "logs")
            os.makedirs(log_dir, exist_ok=True)
            write_json_atomic(tasks_file, [{"key": j.key, "argv": list(j.argv), "cwd": j.cwd or os.getcwd(),
                                            "output_dir": osp.abspath(j.output_dir)} for j in array])
            script = osp.join(folder, "job.sbatch")
            write_text_atomic(script, render_script(self.options, len(array), tasks_file, log_dir, self.python))
            dependency = "afterok:" + ":".join(ids[d] for d in deps) if deps else None
            array_id = self.client.submit(script, dependency)
            after = f" after {', '.join(deps)}" if deps else ""
            print(f"submitted {len(array)} task(s) as SLURM array {array_id}{after} ({script})", file=self.out)
            for i, job in enumerate(array):
                job_id = f"{array_id}_{i}"
                submitted[job.key] = ids[job.key] = job_id
                os.makedirs(job.output_dir, exist_ok=True)
                write_json_atomic(osp.join(job.output_dir, MARKER_FILE),
                                  {"job_id": job_id, "array_job": array_id, "task": i, "key": job.key,
                                   "script": script, "log": osp.join(log_dir, f"{array_id}_{i}.out"),
                                   "submitted": time.strftime("%Y-%m-%d %H:%M:%S")})
                print(f"  [{job.key}] {job_id} -> {job.output_dir}", file=self.out)
        self.out.flush()
        return submitted

    def _wait(self, in_flight: Dict[str, str]) -> None:
        """Poll ``squeue`` until none of ``in_flight``'s tasks (or their arrays) is known as active."""
        ids = set(in_flight.values())
        arrays = {i.split("_")[0] for i in ids}
        last = None
        while True:
            active = self.client.active()
            mine = {j: s for j, s in active.items() if j in ids or j.split("_")[0] in arrays}
            if not mine:
                return
            counts: Dict[str, int] = {}
            for state in mine.values():
                counts[state.lower()] = counts.get(state.lower(), 0) + 1
            line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if line != last:
                print(f"[slurm] {line}", file=self.out)
                self.out.flush()
                last = line
            time.sleep(self.options.poll_interval)

    def _report(self, jobs: Sequence, in_flight: Dict[str, str]) -> List[str]:
        """One message per run that left the queue without a complete results.json."""
        failed = set()
        messages = []
        for job in jobs:
            if job.key not in in_flight or read_complete_record(job.results_path) is not None:
                continue
            failed.add(job.key)
            waited = [d for d in job.depends_on if d in failed]
            marker = read_marker(job.output_dir) or {}
            if waited:
                messages.append(f"{job.key}: not run: {', '.join(waited)} failed before it (SLURM cancelled "
                                f"{in_flight[job.key]}); fix that run and re-run the same command")
                continue
            console = osp.join(job.output_dir, CONSOLE_FILE)
            err = failure_error(job, 1, console if osp.isfile(console) else None)
            text = str(err).replace("train.py failed with exit status 1",
                                    f"SLURM task {in_flight[job.key]} ended without a complete results.json")
            if marker.get("log"):
                text = text.replace("  command:", f"  SLURM log:  {marker['log']}\n  command:", 1)
            messages.append(text)
        return messages
