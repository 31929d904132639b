"""Downloads against a local HTTP server on 127.0.0.1: resume, checks, atomic extraction."""

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from pcam_core.data.download import ChecksumError, download, extract

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes] = {}
    cut_after: int | None = None  # bytes sent before the connection drops (first request only)
    honour_range = True
    requests: list = []


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        range_header = self.headers.get("Range")
        server.requests.append(range_header)
        start = 0
        if range_header and server.honour_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if server.cut_after is not None:
            chunk, server.cut_after = chunk[:server.cut_after], None
            self.wfile.write(chunk)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.files, srv.requests, srv.cut_after, srv.honour_range = {}, [], None, True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv, path):
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def test_resume_after_a_cut(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut_after = 300_000
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    out = download(url(server, "/data.bin"), tmp_path / "data.bin", size=len(PAYLOAD), md5=md5,
                   backoff=0.01)
    assert out.read_bytes() == PAYLOAD
    assert server.requests[0] is None and server.requests[1] == "bytes=300000-"
    assert not (tmp_path / "data.bin.part").exists()


def test_partial_is_kept_when_the_server_stays_down(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut_after = 1000
    target = url(server, "/data.bin")
    with pytest.raises(ConnectionError, match="kept"):
        download(target, tmp_path / "data.bin", size=len(PAYLOAD), retries=1)
    assert (tmp_path / "data.bin.part").stat().st_size == 1000
    assert not (tmp_path / "data.bin").exists()
    download(target, tmp_path / "data.bin", size=len(PAYLOAD))  # next run resumes
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:5000])
    download(url(server, "/data.bin"), tmp_path / "data.bin", size=len(PAYLOAD))
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_md5_mismatch_names_file_and_both_checksums(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as error:
        download(url(server, "/data.bin"), tmp_path / "data.bin", md5=wrong)
    message = str(error.value)
    assert "data.bin" in message and wrong in message and hashlib.md5(PAYLOAD).hexdigest() in message
    assert not (tmp_path / "data.bin").exists()


def _tar_bytes(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_recorded_md5_then_verified(server, tmp_path):
    archive = _tar_bytes({"data/points.json": b"{}"})
    server.files["/points.tgz"] = archive
    record = tmp_path / "points.md5"
    download(url(server, "/points.tgz"), tmp_path / "a.tgz", record_md5=record)
    assert record.read_text().split()[0] == hashlib.md5(archive).hexdigest()
    server.files["/points.tgz"] = _tar_bytes({"data/points.json": b"{\"changed\": 1}"})
    with pytest.raises(ChecksumError, match="MD5 mismatch"):
        download(url(server, "/points.tgz"), tmp_path / "b.tgz", record_md5=record)


def test_extraction_is_atomic_and_safe(tmp_path):
    good = tmp_path / "good.tgz"
    good.write_bytes(_tar_bytes({"VOCdevkit/VOC2012/x.txt": b"x"}))
    extract(good, tmp_path / "out")
    assert (tmp_path / "out/VOCdevkit/VOC2012/x.txt").read_bytes() == b"x"

    bad = tmp_path / "bad.tgz"
    bad.write_bytes(_tar_bytes({"ok.txt": b"1", "../escape.txt": b"2"}))
    with pytest.raises(ValueError, match="unsafe"):
        extract(bad, tmp_path / "out2")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "escape.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out2")]

    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(Exception):
        extract(truncated, tmp_path / "out3")
    assert not (tmp_path / "out3").exists()


def test_sha256_prefix_of_weight_files(server, tmp_path):
    server.files["/resnet-abc.pth"] = PAYLOAD
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    download(url(server, "/resnet-abc.pth"), tmp_path / "w.pth", sha256_prefix=prefix)
    with pytest.raises(ChecksumError, match="SHA-256"):
        download(url(server, "/resnet-abc.pth"), tmp_path / "w2.pth", sha256_prefix="deadbeef")


def test_missing_url_fails_at_once_without_retries(server, tmp_path):
    with pytest.raises(ConnectionError, match="404"):
        download(url(server, "/absent.bin"), tmp_path / "x.bin", retries=5, backoff=30)
    assert not (tmp_path / "x.bin").exists()


def test_existing_verified_file_is_not_fetched_again_and_gets_recorded(server, tmp_path):
    out = tmp_path / "done.bin"
    out.write_bytes(PAYLOAD)
    record = tmp_path / "done.md5"
    download(url(server, "/nothing-served-here"), out, size=len(PAYLOAD), record_md5=record)
    assert server.requests == []
    assert record.read_text().split()[0] == hashlib.md5(PAYLOAD).hexdigest()


def test_cli_downloads_and_extracts(server, tmp_path):
    from pcam_core.cli import main

    server.files["/a.tgz"] = _tar_bytes({"data/points.json": b"{}"})
    md5 = hashlib.md5(server.files["/a.tgz"]).hexdigest()
    assert main(["download", "--url", url(server, "/a.tgz"), "--out", str(tmp_path / "a.tgz"),
                 "--md5", md5, "--extract-to", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x/data/points.json").read_bytes() == b"{}"
