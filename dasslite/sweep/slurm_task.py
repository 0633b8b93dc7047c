"""One task of a SLURM job array the sweep submitted (``dasslite.sweep.slurm``); the job scripts run
``python -m dasslite.sweep.slurm_task TASKS_JSON INDEX``. Kept apart from the launcher so that the compute node runs
this small module, not the package's command line."""
from __future__ import annotations

import json
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
from typing import Optional, Sequence


def run_task(tasks_file: str, index: int) -> int:
    """Run task ``index`` of ``tasks_file``: train.py with its console appended to ``<run dir>/console.txt``.

    SIGTERM (preemption, scancel, the time limit) is forwarded to train.py, so a requeued task finds the last
    checkpoint train.py wrote and resumes from it.
    """
    with open(tasks_file, encoding="utf-8") as f:
        task = json.load(f)[index]
    os.makedirs(task["output_dir"], exist_ok=True)
    console = osp.join(task["output_dir"], "console.txt")
    ids = (f"job {os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '?')} "
           f"(restart {os.environ.get('SLURM_RESTART_COUNT', '0')}) on {os.uname().nodename}")
    with open(console, "a", encoding="utf-8") as fh:
        fh.write(f"==> SLURM {ids}: {task['key']}\n$ {shlex.join(task['argv'])}\n")
        fh.flush()
        print(f"SLURM {ids}: {task['key']} -> {task['output_dir']} (console: {console})", flush=True)
        proc = subprocess.Popen(task["argv"], cwd=task["cwd"], stdout=fh, stderr=subprocess.STDOUT)

        def forward(signum, _frame):
            proc.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, forward)
        rc = proc.wait()
    print(f"train.py exited {rc}", flush=True)
    return rc


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m dasslite.sweep.slurm_task TASKS_JSON INDEX  (run by the job arrays the sweep "
              "submits)", file=sys.stderr)
        return 2
    return run_task(argv[0], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
