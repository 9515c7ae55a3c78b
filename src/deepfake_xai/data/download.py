"""Fetching dataset archives over HTTP(S): resume, retries with back-off, checksum, atomic rename.

A download lands in ``<dest>.part`` and is renamed to ``dest`` only after its SHA-256 matches, so a
file at ``dest`` is always complete and verified. An interrupted download resumes from the bytes
already in ``.part`` with an HTTP Range request; if the server ignores the range, it starts over.
If a resumed file fails its checksum (the kept bytes came from another version of the file), it is
fetched whole once more before the checksum error is raised.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    pass


class ChecksumError(DownloadError):
    pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _retryable(err: Exception) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code in (408, 425, 429) or err.code >= 500
    return isinstance(err, (urllib.error.URLError, ConnectionError, TimeoutError,
                            http.client.IncompleteRead, http.client.RemoteDisconnected, OSError))


def download(
    url: str,
    dest: str | Path,
    sha256: str,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and verify its SHA-256; return ``dest``.

    Raises :class:`ChecksumError` on a mismatch (the partial file is deleted so the next try starts
    clean) and :class:`DownloadError` when the retries are spent or the server refuses. A resumed
    download whose checksum fails is fetched whole once more first (the kept bytes may be stale).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.exists() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    kept_bytes = _fetch(url, part, dest.name, retries, backoff, timeout, progress)
    got = sha256_file(part)
    if got != sha256 and kept_bytes:
        # The bytes kept from an earlier try may belong to another version of the file (the mirror
        # changed, or the .part is stale): fetch the whole file once more before giving up.
        part.unlink()
        _fetch(url, part, dest.name, retries, backoff, timeout, progress)
        got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise ChecksumError(
            f"{url}: SHA-256 {got} does not match the configured {sha256}; the partial file was "
            "deleted. Check data.download[].sha256 or the mirror."
        )
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, name: str, retries: int, backoff: float, timeout: float, progress: bool) -> bool:
    """Fetch ``url`` into ``part``, resuming from its bytes with a Range request, with retries.
    Returns whether the result keeps bytes from before a request (a resume the server honoured)."""
    from ..progress import progress_bar

    last_err: Exception | None = None
    kept_bytes = False
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "deepfake-xai", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                status = getattr(resp, "status", None) or 200
                mode = "wb"
                if offset and status == 206:
                    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != offset:
                        raise DownloadError(f"{url}: server answered a range we did not ask for")
                    mode = "ab"
                    kept_bytes = True
                    total = int(m.group(2)) if m.group(2) != "*" else None
                else:
                    offset, kept_bytes = 0, False  # a plain 200: the server ignored Range, start over
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length else None
                with open(part, mode) as fh, progress_bar(
                    total=total, initial=offset, unit="B", unit_scale=True,
                    desc=name, disable=not progress,
                ) as bar:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size < total:
                    raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416 and part.exists():
                kept_bytes = True
                break  # nothing left to fetch: the checksum below decides
            last_err = err
            if not _retryable(err):
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
        except DownloadError:
            raise
        except Exception as err:  # noqa: BLE001 - filtered by _retryable
            last_err = err
            if not _retryable(err):
                raise
    else:
        raise DownloadError(f"{url}: failed after {retries + 1} attempts: {last_err}")
    return kept_bytes
