"""Resumable, verified downloads and atomic extraction (VOC, SBD, clicks, ImageNet weights).

* A cut download resumes from ``<out>.part`` with an HTTP Range request; a server that
  ignores Range (answers 200) makes us start again rather than append garbage.
* Size and checksum are verified BEFORE the file takes its final name; a mismatch raises an
  error naming the file, both checksums and what to do, and the partial is kept only when it
  may still be completed (shorter than expected) — a wrong complete file is set aside as
  ``.bad`` (so the next run downloads it afresh).
* A full disk is not retried: the error names the partial file (kept, so the next run resumes).
* Only a verified archive is extracted, into a temp folder beside the target that is renamed
  into place at the end, so an interrupted extraction never looks finished.
* The click archive has no published checksum: ``--record-md5`` stores the MD5 of the first
  verified download and checks every later use against it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pcam_core.common.progress import progress_bar

from pcam_core.common.atomic_output import atomic_directory, disk_full_error, is_disk_full, write_text

CHUNK = 1 << 20
TRANSIENT_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, OSError)


class ChecksumError(ValueError):
    """A downloaded file does not match its expected size or checksum."""


def file_digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_into(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current size)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # range not satisfiable: the partial is already whole
            return
        raise
    with response:
        if have and response.status != 206:  # server ignored Range: start over
            have = 0
        mode = "ab" if have else "wb"
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, mode) as f, progress_bar(total, have, part.name.removesuffix(".part"),
                                                 unit="B", unit_scale=True) as bar:
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < int(length):
            # urllib returns a short body without error when the peer closes early
            raise ConnectionError(f"connection closed after {received:,} of {int(length):,} bytes")


def mismatch(path: Path, size: int | None, md5: str | None, sha256_prefix: str | None) -> str | None:
    """What is wrong with the file's size or checksum (both values), or None when it is right."""
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size:,} bytes, expected {size:,}"
    if md5 is not None:
        actual = file_digest(path, "md5")
        if actual != md5.lower():
            return f"MD5 mismatch: got {actual}, expected {md5.lower()}"
    if sha256_prefix is not None:
        actual = file_digest(path, "sha256")
        if not actual.startswith(sha256_prefix.lower()):
            return f"SHA-256 mismatch: got {actual}, expected a value starting with {sha256_prefix.lower()}"
    return None


def verify(path: Path, size: int | None, md5: str | None, sha256_prefix: str | None) -> None:
    """Raise ChecksumError naming the file and both values when a check fails."""
    problem = mismatch(path, size, md5, sha256_prefix)
    if problem:
        raise ChecksumError(f"{path}: {problem}")


def download(url: str, out: str | Path, *, size: int | None = None, md5: str | None = None,
             sha256_prefix: str | None = None, record_md5: str | Path | None = None,
             retries: int = 5, timeout: float = 60.0, backoff: float = 2.0) -> Path:
    """Download ``url`` to ``out`` (resuming, verifying); returns the verified path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = Path(record_md5) if record_md5 else None
    if md5 is None and record is not None and record.exists():
        md5 = record.read_text().split()[0]
    if out.exists():
        problem = mismatch(out, size, md5, sha256_prefix)  # an existing final file must still be right
        if problem:
            raise ChecksumError(f"{out}: {problem}; delete it to download it again"
                                + _recorded_hint(record))
        _record(record, out)
        return out
    part = out.with_name(out.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_into(url, part, timeout)
            break
        except TRANSIENT_ERRORS as error:
            if is_disk_full(error):  # retrying cannot help
                raise disk_full_error(part, error, "the partial download is kept and the "
                                      "next run resumes it") from error
            if isinstance(error, urllib.error.HTTPError) and not _retryable(error.code):
                raise ConnectionError(f"{url}: HTTP {error.code} {error.reason}; not retried "
                                      "(check the URL)") from error
            if attempt == retries:
                raise ConnectionError(f"{url}: download failed after {retries} attempts ({error}); "
                                      f"the partial file {part} is kept and the next run resumes it") from error
            print(f"{url}: attempt {attempt} failed ({error}); resuming in {backoff * attempt:.0f} s", flush=True)
            time.sleep(backoff * attempt)
    if size is not None and part.stat().st_size < size:
        raise ChecksumError(f"{part}: incomplete ({part.stat().st_size:,} of {size:,} bytes); "
                            "kept for resuming, not extracted")
    problem = mismatch(part, size, md5, sha256_prefix)
    if problem:
        bad = part.with_name(out.name + ".bad")
        os.replace(part, bad)
        raise ChecksumError(f"{bad}: {problem}. Set aside under that name (not {out}), so the next "
                            f"run downloads it again; if that fails the same way, the file at {url} "
                            "is not the expected one: check the URL" + _recorded_hint(record))
    os.replace(part, out)
    _record(record, out)
    return out


def _recorded_hint(record: Path | None) -> str:
    """How to accept a changed file whose expected MD5 was only recorded, not published."""
    if record is None or not record.exists():
        return ""
    return f" (the expected MD5 was recorded at the first download: delete {record} to accept a new file)"


def _retryable(code: int) -> bool:
    """Server trouble and rate limits may pass; a 404 or 403 will not."""
    return code in (408, 429) or code >= 500


def _record(record: Path | None, out: Path) -> None:
    """Write the MD5 of the first complete download when none is recorded yet."""
    if record is not None and not record.exists():
        write_text(record, f"{file_digest(out, 'md5')}  {out.name}\n")


def _safe_member(name: str, archive: Path) -> None:
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(f"{archive}: refusing unsafe member path {name!r}")


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a tar/tar.gz/tgz/zip into ``target`` atomically (temp folder + rename)."""
    archive, target = Path(archive), Path(target)
    with atomic_directory(target) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    _safe_member(name, archive)
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                for member in t.getmembers():
                    _safe_member(member.name, archive)
                    if member.issym() or member.islnk():
                        _safe_member(member.linkname, archive)
                try:
                    t.extractall(tmp, filter="data")
                except TypeError:  # Python < 3.10.12 has no filters; members were checked above
                    t.extractall(tmp)
        else:
            raise ValueError(f"{archive}: not a tar or zip archive")
    return target


def add_arguments(parser) -> None:
    parser.add_argument("--url", required=True, help="what to download")
    parser.add_argument("--out", required=True, help="final file path (a .part file beside it holds a partial)")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--md5", help="expected MD5 (hex)")
    parser.add_argument("--sha256-prefix", help="expected start of the SHA-256 (torchvision weight names carry one)")
    parser.add_argument("--record-md5", help="file recording the MD5 of the first download, verified afterwards")
    parser.add_argument("--extract-to", help="extract the verified archive into this folder (atomically)")
    parser.add_argument("--retries", type=int, default=5, help="attempts on network errors (each resumes)")


def main(args) -> int:
    path = download(args.url, args.out, size=args.size, md5=args.md5,
                    sha256_prefix=args.sha256_prefix, record_md5=args.record_md5, retries=args.retries)
    print(f"verified {path} ({path.stat().st_size:,} bytes)")
    if args.extract_to:
        extract(path, args.extract_to)
        print(f"extracted into {args.extract_to}")
    return 0
