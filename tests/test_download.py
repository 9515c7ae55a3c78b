"""TrueFace download against a real HTTP server on 127.0.0.1: resume, retries, checksums."""

import hashlib
import http.server
import os
import threading

import pytest

from deepfake_xai.data.download import ChecksumError, DownloadError, download

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; misbehaves as the test server's `mode` says."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if srv.mode == "fail_first" and len(srv.requests) <= srv.failures:
            self.send_error(503, "try later")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.mode != "ignore_range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "cut" and len(srv.requests) == 1:
            self.wfile.write(body[: len(body) // 3])  # the connection dies a third of the way in
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.mode, srv.requests, srv.failures = "ok", [], 0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}/TrueFace.zip"


def test_plain_download_verifies_and_renames(server, tmp_path):
    out = download(_url(server), tmp_path / "a.zip", SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.zip.part").exists()
    # a second call finds the verified file and does not download again
    download(_url(server), tmp_path / "a.zip", SHA, progress=False)
    assert len(server.requests) == 1


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.mode = "cut"
    out = download(_url(server), tmp_path / "a.zip", SHA, backoff=0.01, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests[0] is None
    third = (len(PAYLOAD)) // 3
    assert server.requests[1] == f"bytes={third}-"  # resumed exactly where the bytes stopped


def test_existing_partial_file_is_resumed(server, tmp_path):
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:1000])
    out = download(_url(server), tmp_path / "a.zip", SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=1000-"]


@pytest.mark.parametrize("stale", [b"x" * 1000, os.urandom(len(PAYLOAD) + 10)], ids=["shorter", "longer"])
def test_a_stale_partial_file_from_another_version_is_fetched_again_whole(server, tmp_path, stale):
    """Bytes kept from another version of the file: the resumed file fails its checksum (or the
    server answers 416, nothing left), so it is fetched whole once more, not reported as a bad mirror."""
    (tmp_path / "a.zip.part").write_bytes(stale)
    out = download(_url(server), tmp_path / "a.zip", SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(stale)}-", None]


def test_a_wrong_checksum_after_a_resume_still_fails_after_one_whole_fetch(server, tmp_path):
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:1000])
    with pytest.raises(ChecksumError, match="does not match"):
        download(_url(server), tmp_path / "a.zip", "0" * 64, progress=False)
    assert server.requests == ["bytes=1000-", None]
    assert not (tmp_path / "a.zip.part").exists()


def test_a_stale_partial_file_is_fetched_again_after_a_cut_resume_too(server, tmp_path):
    """The stale bytes are resumed, the connection dies, the resume goes on: still one whole fetch."""
    server.mode = "cut"
    (tmp_path / "a.zip.part").write_bytes(b"x" * 1000)
    out = download(_url(server), tmp_path / "a.zip", SHA, backoff=0.01, progress=False)
    assert out.read_bytes() == PAYLOAD and server.requests[-1] is None


def test_a_wrong_checksum_without_a_resume_downloads_once(server, tmp_path):
    server.mode = "ignore_range"  # the kept bytes are dropped: nothing stale can be in the file
    (tmp_path / "a.zip.part").write_bytes(b"x" * 1000)
    with pytest.raises(ChecksumError):
        download(_url(server), tmp_path / "a.zip", "0" * 64, progress=False)
    assert len(server.requests) == 1


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.mode = "ignore_range"
    (tmp_path / "a.zip.part").write_bytes(b"garbage that must not stay in front")
    out = download(_url(server), tmp_path / "a.zip", SHA, progress=False)
    assert out.read_bytes() == PAYLOAD


def test_retries_with_backoff_then_succeeds(server, tmp_path):
    server.mode, server.failures = "fail_first", 2
    out = download(_url(server), tmp_path / "a.zip", SHA, backoff=0.01, progress=False)
    assert out.read_bytes() == PAYLOAD and len(server.requests) == 3


def test_gives_up_after_the_retries(server, tmp_path):
    server.mode, server.failures = "fail_first", 100
    with pytest.raises(DownloadError, match="after 3 attempts"):
        download(_url(server), tmp_path / "a.zip", SHA, retries=2, backoff=0.01, progress=False)
    assert not (tmp_path / "a.zip").exists()


def test_checksum_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    with pytest.raises(ChecksumError, match="does not match"):
        download(_url(server), tmp_path / "a.zip", "0" * 64, progress=False)
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()


def test_a_wrong_existing_file_is_not_trusted(server, tmp_path):
    (tmp_path / "a.zip").write_bytes(b"stale")
    assert download(_url(server), tmp_path / "a.zip", SHA, progress=False).read_bytes() == PAYLOAD
