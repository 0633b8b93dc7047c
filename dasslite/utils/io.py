"""Atomic file writes: a crashed or failed run never leaves a half-written results file behind."""
from __future__ import annotations

import json
import os
import tempfile


def write_json_atomic(path: str, payload: dict) -> str:
    """Write ``payload`` as JSON to a temp file beside ``path`` and rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
