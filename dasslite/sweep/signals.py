"""SIGTERM / SIGHUP for sweeps: what ``kill``, ``timeout`` and schedulers send must stop a sweep the way Ctrl-C does.

By default SIGTERM ends the sweep at once and orphans its train.py children, which keep writing into run folders
that a rerun then trains a second time. :func:`terminate_on_signals` turns the signal into :class:`TerminatedError`,
which unwinds through the runners: each stops (SIGTERM, then SIGKILL after a grace period) and waits for the
train.py it started, naming the interrupted run.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading

__all__ = ["TerminatedError", "terminate_on_signals", "stop_process", "STOP_GRACE_S"]

STOP_GRACE_S = 10.0


class TerminatedError(BaseException):
    """The sweep received a termination signal (a BaseException, like KeyboardInterrupt, so nothing swallows it)."""


def _raise_terminated(signum, _frame) -> None:
    raise TerminatedError(signal.Signals(signum).name)


def terminate_on_signals() -> None:
    """Make SIGTERM (and SIGHUP where it exists) raise TerminatedError in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_terminated)


def stop_process(proc: subprocess.Popen, what: str, grace: float = STOP_GRACE_S, out=None) -> None:
    """Terminate ``proc`` if it still runs, wait up to ``grace`` seconds, then kill it; say what was interrupted."""
    out = out if out is not None else sys.stderr
    if proc.poll() is not None:
        return
    print(f"stopping {what}: it was interrupted and resumes on a rerun", file=out)
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"{what} did not stop within {grace:.0f}s; killing it", file=out)
        proc.kill()
        proc.wait()
