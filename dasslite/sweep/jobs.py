"""A planned train.py run (:class:`Job`) and what its folder says about it: done, to resume, new, or another run's."""
from __future__ import annotations

import os
import os.path as osp
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dasslite.results.runs import LOG_FILE, RESULTS_FILE, read_complete_record
from dasslite.utils.locks import describe_holder, lock_holder


class SweepError(RuntimeError):
    """A run failed, or a finished run belongs to another protocol: the sweep stops (exit status 1)."""


class SweepUsageError(SweepError):
    """Bad arguments or a missing config/data folder (exit status 2)."""
CONSOLE_FILE = "console.txt"
# A run folder's path ends in <protocol>/<phase>/<ds>/shots_<K>/<T>/<cfg>/seed<S>: model dirs are compared on that
# tail, so "output/..." and "/abs/output/..." name the same run.
LAYOUT_DEPTH = 7


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
    results_file: str = RESULTS_FILE  # the record that says the run is finished (osr: osr_results.json)

    @property
    def log_path(self) -> str:
        return osp.join(self.output_dir, LOG_FILE)

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

    def plan_label(self) -> str:
        """How a printed plan lists the job: its state (a conflicting record named) and the jobs it waits for."""
        try:
            state = self.state()
        except SweepError as exc:
            state = f"CONFLICT: {exc}"
        label = {"done": "skip (complete)", "resume": "resume (incomplete)", "new": "run"}.get(state, state)
        return label + (f" after {', '.join(self.depends_on)}" if self.depends_on else "")

    def command(self) -> str:
        return shlex.join(self.argv)
# Why a conflict on these fields happens, printed before "Move that folder away or use another --output."
CONFLICT_HINTS = {
    "load_epoch": "It evaluated another checkpoint epoch: the folders do not name the epoch, so give each "
                  "--load-epoch its own --output.",
    "config_file": "It was made with another recipe file: give --cfg a name of its own for that recipe, or use "
                   "another --output.",
}
