"""One run folder and the number it holds: ``results.json`` first, else ``log.txt`` parsed as CoOp's parser does.

A run folder counts only when it holds a finished test. ``results.json`` is preferred: train.py writes it atomically
after a successful test, with ``"complete": true`` (and :mod:`dasslite.results.validation` checks it). Without one
(real Dassl, older runs), ``log.txt`` is parsed like CoOp's ``parse_test_res.py``: ``\\* <keyword>: X%`` matched only
after the end signal (``Finish training``, Dassl.ProGrad's ``Finished training``; ``=> result`` for evaluations), the
last match winning. A folder with neither, or whose log stops early, is *missing*, with the reason.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from dasslite.results.validation import record_problem
RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
TRAIN_END_SIGNALS = ("Finish training", "Finished training")  # upstream Dassl, Dassl.ProGrad (KgCoOp)
TEST_END_SIGNALS = ("=> result",)
SIGNALS = ("auto", "train", "test")
# --keyword (the word in the ``* <word>: X%`` log line) -> key in results.json
KEYWORD_TO_JSON = {"accuracy": "accuracy", "error": "error_rate", "error_rate": "error_rate", "macro_f1": "macro_f1"}
JSON_TO_LOG_KEYWORD = {"error_rate": "error"}
_EVAL_ONLY_RE = re.compile(r"^\s*eval_only\s*:\s*(True|False)\s*$")
SEED_DIR_RE = re.compile(r"^seed[_-]?(\d+)$")


class NoResultsError(RuntimeError):
    """Nothing complete where results were expected (the message names the folder and what was missing)."""


@dataclass
class Run:
    """One run folder. ``value`` is the requested metric (percent) or None when the run is missing/unfinished."""

    path: str
    value: Optional[float] = None
    source: Optional[str] = None  # the file the value was read from
    problem: Optional[str] = None  # why the run does not count
    record: dict = field(default_factory=dict)  # results.json contents, when used

    @property
    def label(self) -> str:
        return osp.basename(osp.normpath(self.path))

    @property
    def seed(self) -> Optional[int]:
        match = SEED_DIR_RE.match(self.label)
        if match:
            return int(match.group(1))
        seed = self.record.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def complete(self) -> bool:
        return self.value is not None


def log_keyword(keyword: str) -> str:
    return JSON_TO_LOG_KEYWORD.get(keyword, keyword)


def _json_key(keyword: str) -> str:
    return KEYWORD_TO_JSON.get(keyword, keyword)


def is_eval_only_log(lines: Sequence[str]) -> Optional[bool]:
    for line in lines:
        match = _EVAL_ONLY_RE.match(line)
        if match:
            return match.group(1) == "True"
    return None


def parse_log(path: str, keyword: str = "accuracy", signal: str = "train"):
    """Parse one log like CoOp's parser. Returns ``(value, problem)``: exactly one of them is None."""
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        return None, f"cannot read {osp.basename(path)}: {exc}"
    if signal == "auto":
        signal = "test" if is_eval_only_log(lines) else "train"
    signals = TEST_END_SIGNALS if signal == "test" else TRAIN_END_SIGNALS
    pattern = re.compile(r"\* " + re.escape(log_keyword(keyword)) + r": ([\.\deE+-]+)%")
    seen_end, value = False, None
    for line in lines:
        if not seen_end and any(s in line for s in signals):
            seen_end = True
        if seen_end:
            match = pattern.search(line)
            if match:
                try:
                    value = float(match.group(1))
                except ValueError:
                    continue
    if not seen_end:
        quoted = " / ".join(f"'{s}'" for s in signals)
        return None, f"{osp.basename(path)} never reaches {quoted} (unfinished run?)"
    if value is None:
        return None, (f"{osp.basename(path)} has no '* {log_keyword(keyword)}: X%' line after the end signal "
                      f"(unfinished test?)")
    return value, None


def read_run(path: str, keyword: str = "accuracy", signal: str = "auto", log_only: bool = False,
             expect: Optional[Dict[str, object]] = None) -> Run:
    """Read one run folder: complete ``results.json`` first, else ``log.txt`` (see the module docstring).

    ``expect`` maps results.json fields to required values (e.g. ``{"subsample_classes": "new"}``); a record that
    disagrees makes the run missing rather than counting a number from the wrong protocol.
    """
    run = Run(path=path)
    json_path = osp.join(path, RESULTS_FILE)
    if not log_only and osp.isfile(json_path):
        try:
            with open(json_path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as exc:
            run.problem = f"{RESULTS_FILE} is unreadable ({exc})"
            return run
        if not isinstance(record, dict) or record.get("complete") is not True:
            run.problem = f"{RESULTS_FILE} is not marked complete"
            return run
        for key, wanted in (expect or {}).items():
            if key in record and record[key] != wanted:
                run.problem = f"{RESULTS_FILE} has {key}={record[key]!r}, expected {wanted!r}"
                return run
        key = _json_key(keyword)
        rejected = record_problem(record, path, key)
        if rejected:  # never replaced by the log's (rounded) number
            run.problem = rejected
            return run
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            run.value, run.source, run.record = float(value), json_path, record
            return run
        # no such metric in the record: the log may still have it (e.g. a custom keyword)
    log_path = osp.join(path, LOG_FILE)
    if not osp.isfile(log_path):
        run.problem = f"no {RESULTS_FILE} or {LOG_FILE} in the folder"
        return run
    value, problem = parse_log(log_path, keyword=keyword, signal=signal)
    run.value, run.problem = value, problem
    if value is not None:
        run.source = log_path
    return run


def subdirs(directory: str) -> List[str]:
    """Non-hidden sub-folders, sorted (CoOp's ``listdir_nohidden``; files are ignored instead of failing)."""
    return sorted(osp.join(directory, name) for name in os.listdir(directory)
                  if not name.startswith(".") and osp.isdir(osp.join(directory, name)))


def _is_run_dir(path: str) -> bool:
    return osp.isfile(osp.join(path, RESULTS_FILE)) or osp.isfile(osp.join(path, LOG_FILE))


def collect_runs(directory: str, keyword: str = "accuracy", signal: str = "train",
                 log_only: bool = False) -> List[Run]:
    """Every sub-folder of ``directory`` as a run (``directory`` itself when it is a run folder with no subfolders)."""
    if not osp.isdir(directory):
        raise NoResultsError(f"no complete runs under {directory}: no such folder")
    subs = subdirs(directory)
    if not subs and _is_run_dir(directory):
        subs = [directory]
    return [read_run(sub, keyword=keyword, signal=signal, log_only=log_only) for sub in subs]


def read_complete_record(path: str) -> Optional[dict]:
    """The results.json at ``path`` if it exists, parses and says ``"complete": true``; else None."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("complete") is True else None
