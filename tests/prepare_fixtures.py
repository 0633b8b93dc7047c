"""A real HTTP server on 127.0.0.1 for the dataset-preparation tests: plain files with Range support, a transfer
cut off half way (once), and Google-Drive-style endpoints (direct file, virus-scan confirm page, quota page)."""
from __future__ import annotations

import contextlib
import http.server
import io
import os
import socket
import tarfile
import threading
import urllib.parse
import zipfile
from typing import Dict, Iterator, List, Optional, Set, Tuple

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{base}/download" method="get"><input type="submit" id="uc-download-link" \
value="Download anyway"/><input type="hidden" name="id" value="{id}"><input type="hidden" name="export" \
value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0f1e2d3c">\
</form></body></html>"""  # Drive serves the form on one line; gdown reads the page line by line

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p>
</body></html>"""


class LocalServer:
    """What the handler serves, and a log of (path, Range header) per request."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.drive: Dict[str, bytes] = {}
        self.confirm: Set[str] = set()  # Drive ids answered with the confirm page first
        self.quota: Set[str] = set()  # Drive ids answered with the quota page
        self.cut_once: Set[str] = set()  # keys whose next transfer stops half way
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.base = ""

    @property
    def drive_url(self) -> str:
        return self.base + "/uc?export=download&id={id}"


def _handler(state: LocalServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def _send_html(self, html: str) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_bytes(self, key: str, data: bytes) -> None:
            wanted = self.headers.get("Range")
            start = int(wanted[len("bytes="):].split("-")[0]) if wanted else 0
            if start >= len(data) and wanted:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if key in state.cut_once:  # announce everything, send half, hang up
                state.cut_once.discard(key)
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            parsed = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(parsed.query)
            state.requests.append((parsed.path + ("?" + parsed.query if parsed.query else ""),
                                   self.headers.get("Range")))
            drive_id = (query.get("id") or [""])[0]
            if parsed.path == "/uc" and drive_id in state.drive:
                if drive_id in state.quota:
                    return self._send_html(QUOTA_PAGE)
                if drive_id in state.confirm:
                    return self._send_html(CONFIRM_PAGE.format(base=state.base, id=drive_id))
                return self._send_bytes("drive:" + drive_id, state.drive[drive_id])
            if parsed.path == "/download" and drive_id in state.drive and query.get("confirm") == ["t"]:
                return self._send_bytes("drive:" + drive_id, state.drive[drive_id])
            if parsed.path in state.files:
                return self._send_bytes(parsed.path, state.files[parsed.path])
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextlib.contextmanager
def local_server() -> Iterator[LocalServer]:
    """A LocalServer running on 127.0.0.1 (free port) in a thread, stopped on exit."""
    state = LocalServer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def zip_tree(folder: str, members: List[str]) -> bytes:
    """A zip (deflated) of ``folder/<member>`` trees, stored under their member names."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            for path, _, files in os.walk(os.path.join(folder, member)):
                for name in sorted(files):
                    full = os.path.join(path, name)
                    archive.write(full, os.path.relpath(full, folder))
    return out.getvalue()


def targz_tree(folder: str, members: List[str]) -> bytes:
    """A gzip-compressed tar of ``folder/<member>`` trees, stored under their member names."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for member in members:
            archive.add(os.path.join(folder, member), arcname=member)
    return out.getvalue()
