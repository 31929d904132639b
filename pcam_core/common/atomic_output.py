"""Write every output under a temporary name and rename it into place.

A job killed half-way (Ctrl-C, SLURM wall time, out of memory) must never leave a file
that looks finished: Snakemake and our own resume logic trust any file that exists.
``os.replace`` is atomic within one file system, so the temp name lives beside the target.

A full disk (or an exhausted quota) while writing leaves no file under the final name either:
the temp file is removed and the error names the output and says what filled up, where the
OS error alone ("[Errno 28] No space left on device") names neither.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


# HDF5 reports a failed write as an OSError without errno; its message carries the OS text.
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


class DiskFullError(OSError):
    """A write failed for lack of space or quota; the message names the output and the fix."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for lack of space or quota (errno or HDF5's text)."""
    if not isinstance(error, OSError):
        return False
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or any(t in str(error) for t in _DISK_FULL_TEXTS)


def disk_full_error(path: str | Path, error: OSError,
                    kept: str = "nothing was written under that name") -> DiskFullError:
    """The error to raise instead of ``error``: the output, what is left of it, and the fix."""
    quota = error.errno == errno.EDQUOT or "quota" in str(error)
    folder = Path(path).parent
    return DiskFullError(error.errno or errno.ENOSPC,
                         f"{'quota exceeded' if quota else 'disk full'} while writing {path} "
                         f"({kept}): free space on the file system of {folder} "
                         f"(`df -h {folder}`), then rerun")


@contextlib.contextmanager
def _disk_full_named(path: Path) -> Iterator[None]:
    """Re-raise a full disk met inside as a DiskFullError naming ``path`` (an inner output's
    own DiskFullError is kept: it names the file that was being written)."""
    try:
        yield
    except OSError as error:
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise disk_full_error(path, error) from error
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what a killed writer of ``path`` left beside it: its temp file or folder
    (``.<name>.<mkstemp's 8 characters>.tmp``) and a replaced folder it did not delete.

    Only one job writes a given output at a time (Snakemake runs one producer per file), so
    whatever carries that output's temp name now is a dead writer's leftover; without this a
    SIGKILL would leave hidden files behind for ever, inside a directory output too.
    """
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:[a-z0-9_]{{8}}\.tmp|old-\d+)$")
    removed = []
    if path.parent.is_dir():
        for leftover in path.parent.iterdir():
            if pattern.match(leftover.name):
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it to ``path`` on success.

    On any error the temp file is removed; a full disk becomes a DiskFullError naming ``path``.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    with _disk_full_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs follow the user's umask
    try:
        with _disk_full_named(path):
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; rename it to ``path`` on success.

    An existing ``path`` is replaced only after the new content is complete. On any error the
    temp directory is removed; a full disk becomes a DiskFullError naming ``path``.
    """
    path = Path(path)
    remove_stale_temporaries(path)
    with _disk_full_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _disk_full_named(path):
            yield tmp
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
