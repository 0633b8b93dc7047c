"""Runners execute a plan: :class:`SequentialRunner` (one job at a time, console attached) and :class:`GpuPoolRunner`
(one job per GPU id, an evaluation only after its training succeeded). The SLURM launcher (``dasslite.sweep.slurm``)
shares their announcements and failure reports."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from dasslite.results.runs import RESULTS_FILE, read_complete_record
from dasslite.sweep.jobs import CONSOLE_FILE, Job, SweepError, SweepUsageError
from dasslite.sweep.signals import stop_process


def describe_job(job: Job) -> str:
    what = "evaluate" if job.eval_only else "train"
    where = f"{job.dataset}, " if job.dataset else ""
    sub = job.expect.get("subsample_classes", "")
    return f"[{job.key}] {what} on {where}{sub} classes -> {job.output_dir}"


def announce_state(job: Job, state: str, out) -> None:
    if state == "done":
        print(f"Results exist in {job.output_dir} (complete); skipping", file=out)
    elif state == "resume":
        if job.eval_only:
            print(f"Incomplete run in {job.output_dir} (no complete results.json); evaluating again into it",
                  file=out)
        else:
            print(f"Incomplete run in {job.output_dir} (no complete results.json); re-running train.py into it "
                  f"(it resumes from the last checkpoint there, if any)", file=out)


def failure_error(job: Job, rc: int, console: Optional[str] = None) -> SweepError:
    if rc == 0:
        why = f"train.py exited 0 but left no complete {RESULTS_FILE} in the run folder"
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
            announce_state(job, state, self.out)
            if state == "done":
                outcome[job.key] = "skipped"
                continue
            print(describe_job(job), file=self.out)
            print(f"$ {job.command()}", file=self.out)
            self.out.flush()
            start = time.time()
            rc = self.launcher(job, self.env)
            if rc != 0 or read_complete_record(job.results_path) is None:
                raise failure_error(job, rc)
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
                    announce_state(job, "done", self.out)
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
                        failures.append(failure_error(job, rc, console))
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
                            announce_state(ready, ready.state(), self.out)
                            env = dict(self.env, CUDA_VISIBLE_DEVICES=str(gpu))
                            console = osp.join(ready.output_dir, CONSOLE_FILE)
                            print(f"[gpu {gpu}] start {describe_job(ready)} (console: {console})", file=self.out)
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
