"""Resumable HTTP downloads (Range requests, progress bar, size and digest checks, free-space check) and Google
Drive links (the confirm page is read by gdown's own parser of Drive's page formats).

A transfer writes ``<file>.part`` next to its target and renames it only after every check passed, so a later run
either resumes the ``.part`` (``Range: bytes=<have>-``) or trusts a complete file. Every failure names the URL, the
file and what to do next.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from typing import Callable, Dict, Optional

from .recipes import Download, drive_view_url

__all__ = ["DownloadError", "ChecksumError", "DiskSpaceError", "drive_url", "fetch", "file_digests",
           "check_free_space", "free_bytes", "DEFAULT_DRIVE_URL"]

CHUNK_BYTES = 1 << 20
DEFAULT_DRIVE_URL = "https://drive.google.com/uc?export=download&id={id}"
DRIVE_URL_ENV = "DASSLITE_DRIVE_URL"  # a template with {id}: a Drive mirror (or a local server in tests)


class DownloadError(RuntimeError):
    """A transfer that did not complete; the message names the URL, the file and what to do."""


class ChecksumError(DownloadError):
    """A downloaded file whose size or digest differs from the published one (the file is deleted)."""


class DiskSpaceError(DownloadError):
    """Not enough free space under the root for a download and its extraction."""


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem holding ``path`` (the default space probe; tests pass their own)."""
    return shutil.disk_usage(path).free


def check_free_space(folder: str, needed: int, what: str, probe: Callable[[str], int] = free_bytes) -> None:
    """Raise DiskSpaceError unless ``needed`` bytes are free where ``folder`` lives."""
    free = probe(folder)
    if needed > free:
        raise DiskSpaceError(f"{what} needs about {needed / 2**30:.2f} GiB under {folder}, but only "
                             f"{free / 2**30:.2f} GiB is free. Free some space or choose another --root.")


def drive_url(drive_id: str, template: Optional[str] = None) -> str:
    """The direct-download URL of a Drive file (``$DASSLITE_DRIVE_URL`` or Google's ``uc?export=download``)."""
    template = template or os.environ.get(DRIVE_URL_ENV) or DEFAULT_DRIVE_URL
    return template.format(id=drive_id)


def file_digests(path: str) -> Dict[str, str]:
    """MD5 and SHA-256 of a file (both, in one read)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def _problems(path: str, item: Download, announced: Optional[int]) -> list:
    """What is wrong with a complete-looking file: size against the published/announced size, digests."""
    size = os.path.getsize(path)
    expected_size = item.size or announced
    problems = []
    if expected_size and size != expected_size:
        problems.append(f"size {size} bytes, expected {expected_size}")
    if item.md5 or item.sha256:
        digests = file_digests(path)
        for algo in ("md5", "sha256"):
            want = getattr(item, algo).lower()
            if want and digests[algo] != want:
                problems.append(f"{algo} {digests[algo]}, expected {want}")
    return problems


def _opener():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))


def _resolve_drive(item: Download, target: str, template: Optional[str], timeout: float, opener) -> str:
    """The URL that serves a Drive file's bytes: the direct link, or the one behind Drive's confirm page (large
    files, virus-scan warning). A quota or permission page is an error naming the manual link."""
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    url = drive_url(item.drive_id, template)
    try:
        with opener.open(url, timeout=timeout) as response:
            if not response.headers.get("Content-Type", "").startswith("text/html"):
                return response.geturl()
            page = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(_manual_hint(item, url, f"could not reach Google Drive ({exc})", target)) from exc
    try:
        target = get_url_from_gdrive_confirmation(page)
    except FileURLRetrievalError as exc:
        reason = " ".join(str(exc).split())
        raise DownloadError(_manual_hint(item, url, f"Google Drive refused the download ({reason}); this is "
                                                    "usually its download quota", target)) from exc
    return urllib.parse.urljoin(url, target)


def _manual_hint(item: Download, url: str, reason: str, target: str) -> str:
    """Failure message: the file, why, the URL, and how to finish by hand."""
    where = f"open {drive_view_url(item.drive_id)} in a browser" if item.drive_id else f"download {item.source}"
    return (f"{item.name}: {reason} [URL: {url}]. To continue by hand, {where}, save the file as {target} and "
            "run the same command again (it picks the file up and verifies it).")


def _content_range_total(value: str) -> Optional[int]:
    """The total size in a ``Content-Range: bytes a-b/total`` header (None when '*' or absent)."""
    total = value.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


def _transfer(url: str, part: str, timeout: float, opener, progress: bool,
              check_space: Callable[[int], None]) -> Optional[int]:
    """Append ``url``'s bytes to ``part`` (resuming with Range when it has some); return the full size if known.
    ``check_space(bytes still to come)`` runs once the server has announced the size, before anything is written."""
    from tqdm import tqdm

    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-", "Accept-Encoding": "identity"}
                                     if have else {"Accept-Encoding": "identity"})
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is already complete
            return _content_range_total(exc.headers.get("Content-Range", "")) or have
        raise
    with response:
        if have and response.status == 206:
            total = _content_range_total(response.headers.get("Content-Range", ""))
            mode = "ab"
        else:  # the server ignored the Range: start over
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total:
            check_space(total - have)
        with open(part, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                           desc=os.path.basename(part)[:-5], disable=not progress) as bar:
            while True:
                block = response.read(CHUNK_BYTES)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    received = os.path.getsize(part)
    if total and received < total:  # the connection closed early without an error from http.client
        raise ConnectionError(f"the server closed the connection after {received} of {total} bytes")
    return total


def fetch(item: Download, target: str, *, drive_template: Optional[str] = None, timeout: float = 60.0,
          progress: bool = True, space_factor: float = 1.0, space_probe: Callable[[str], int] = free_bytes) -> str:
    """Make ``target`` a verified copy of ``item``: reuse it when it passes the checks, else download (resuming a
    ``target.part``), check size/digest, and rename into place. ``space_factor`` x the size must be free first
    (2 for an archive that will also be extracted)."""
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(target) and not _problems(target, item, None):
        return target
    opener = _opener()
    url = item.url or _resolve_drive(item, target, drive_template, timeout, opener)
    part = target + ".part"

    def check_space(remaining: int) -> None:
        check_free_space(folder, int(remaining * space_factor), f"{item.name} ({url})", space_probe)

    if item.size:
        check_space(item.size - (os.path.getsize(part) if os.path.exists(part) else 0))
    try:
        total = _transfer(url, part, timeout, opener, progress, check_space)
    except urllib.error.HTTPError as exc:
        raise DownloadError(_manual_hint(item, url, f"the server answered HTTP {exc.code} {exc.reason}",
                                         target)) from exc
    except DiskSpaceError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        raise DownloadError(_manual_hint(item, url, f"the transfer stopped after {have} bytes ({type(exc).__name__}: "
                                                    f"{exc}); the received bytes are kept in {part} and the next run "
                                                    "resumes from there", target)) from exc
    problems = _problems(part, item, total)
    if problems:
        os.remove(part)
        raise ChecksumError(_manual_hint(item, url, f"the downloaded file does not match ({'; '.join(problems)}); "
                                                    "it was deleted. Run again to download it afresh; if this "
                                                    "repeats, the server serves a different file", target))
    os.replace(part, target)
    return target
