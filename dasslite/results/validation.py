"""Checks a results.json record must pass before the tables average it (used by ``dasslite.results.runs.read_run``).

A record counts only if its metric is a number in [0, 100] that agrees with its own ``correct``/``total`` (a
fraction such as 0.85 where 85.0 is meant disagrees), and if it belongs to the folder it sits in: the folder's
``seed<N>``, and in the sweeps' layout ``.../shots_<K>/<trainer>/<cfg>/seed<N>`` its shots and trainer. A record
that fails is rejected with the reason (listed under the table's missing runs), never replaced by the log's number.
"""
from __future__ import annotations

import math
import os.path as osp
import re
from typing import Optional

__all__ = ["PERCENT_KEYS", "record_problem"]

PERCENT_KEYS = ("accuracy", "error_rate", "macro_f1")
_SEED_DIR = re.compile(r"^seed[_-]?(\d+)$")
_SHOTS_DIR = re.compile(r"^shots_(-?\d+)$")
_AGREE = 0.01  # percent points between the recorded accuracy and 100 * correct / total


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_problem(record: dict, key: str) -> Optional[str]:
    value = record[key]
    if not _is_number(value):
        return f"{key}={value!r} is not a number"
    if not math.isfinite(value):
        return f"{key}={value!r} is not finite"
    if key in PERCENT_KEYS and not 0.0 <= value <= 100.0:
        return f"{key}={value!r} is outside [0, 100] (percent)"
    total, correct = record.get("total"), record.get("correct")
    if key == "accuracy" and _is_number(total) and _is_number(correct):
        if total <= 0 or not 0 <= correct <= total:
            return f"correct={correct!r} / total={total!r} is not a valid count"
        expected = 100.0 * correct / total
        if abs(value - expected) > _AGREE:
            return (f"accuracy={value!r} disagrees with correct/total = {correct}/{total} = {expected:.2f}% "
                    "(a fraction instead of a percentage, or an edited record)")
    return None


def _folder_problem(record: dict, path: str) -> Optional[str]:
    parts = osp.normpath(path).replace("\\", "/").split("/")
    seed_match = _SEED_DIR.match(parts[-1])
    if seed_match and "seed" in record and record["seed"] != int(seed_match.group(1)):
        return f"seed={record['seed']!r} but the folder is {parts[-1]} (a record copied from another run)"
    if len(parts) >= 4 and seed_match and _SHOTS_DIR.match(parts[-4]):
        shots = int(_SHOTS_DIR.match(parts[-4]).group(1))
        if "num_shots" in record and record["num_shots"] != shots:
            return f"num_shots={record['num_shots']!r} but the folder is {parts[-4]}"
        if "trainer" in record and record["trainer"] != parts[-3]:
            return f"trainer={record['trainer']!r} but the folder is {parts[-3]}"
    return None


def record_problem(record: dict, path: str, key: str) -> Optional[str]:
    """Why the complete ``record`` in run folder ``path`` must not be averaged for metric ``key``, or None."""
    where = "results.json has "
    problem = _folder_problem(record, path)
    if problem is None and key in record:
        problem = _metric_problem(record, key)
    return where + problem if problem else None
