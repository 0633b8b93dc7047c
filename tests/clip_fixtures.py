"""Test helpers for CLIP checkpoints: a real HTTP server on 127.0.0.1 and OpenAI-style URL publishing."""
from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path
from typing import Iterator, Tuple

from dasslite.clip.download import file_sha256


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (keep pytest output clean)
        pass


@contextlib.contextmanager
def serve_directory(root: str | Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (free port) in a thread; yields the base URL, stops on exit."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def publish_checkpoint(checkpoint: str | Path, served_root: str | Path, name: str = "tiny.pt") -> Tuple[str, str]:
    """Copy ``checkpoint`` to ``served_root/<sha256>/<name>`` (OpenAI's URL layout); return (url path, sha256)."""
    sha = file_sha256(checkpoint)
    target = Path(served_root) / sha / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, target)
    return f"/{sha}/{name}", sha
