"""Progress of long stages: a tqdm bar on a terminal, a periodic single line in a log file.

A Slurm job's stderr is a file: tqdm's carriage-return redraws there become one unreadable
line that grows by a few hundred bytes a second. So when stderr is not a terminal, a stage
prints one plain line (done/total, percent, rate, ETA, its postfix) every
``PCAM_PROGRESS_INTERVAL`` seconds (default 30: about 20 lines for a 10-minute job) and a
last one when it ends. ``PCAM_NO_PROGRESS`` set to anything silences both (benchmarks,
tests).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

DEFAULT_INTERVAL_S = 30.0


def progress_bar(total: int | None, initial: int = 0, desc: str = "", *, unit: str = "it",
                 unit_scale: bool = False, stream: TextIO | None = None):
    """A progress object with ``update(n)``, ``set_postfix(**values)`` and ``close()``.

    tqdm (rate and ETA in the bar) when ``stream`` (default stderr) is a terminal, else a
    :class:`LineProgress`; disabled when ``PCAM_NO_PROGRESS`` is set.
    """
    stream = sys.stderr if stream is None else stream
    disabled = bool(os.environ.get("PCAM_NO_PROGRESS"))
    if not disabled and not _is_terminal(stream):
        return LineProgress(total, initial, desc, unit=unit, unit_scale=unit_scale,
                            stream=stream, interval=_interval())
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, unit=unit,
                unit_scale=unit_scale, disable=disabled, mininterval=1.0, file=stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _interval() -> float:
    text = os.environ.get("PCAM_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_INTERVAL_S
    except ValueError:
        raise ValueError(f"PCAM_PROGRESS_INTERVAL must be a number of seconds, got {text!r}") from None


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_amount(value: float, unit: str, scale: bool) -> str:
    """``1536, "B", True`` -> ``1.5 kB`` (decimal prefixes, as tqdm's unit_scale)."""
    if not scale:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.1f} {prefix}{unit}" if prefix else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class LineProgress:
    """One line per ``interval`` seconds: ``desc: 40/200 (20%) 3.1 it/s, ETA 00:52, loss=0.41``."""

    def __init__(self, total: int, initial: int, desc: str, *, unit: str = "it",
                 unit_scale: bool = False, stream: TextIO, interval: float,
                 clock=time.monotonic):
        self.total, self.n, self.desc = total, initial, desc
        self.unit, self.unit_scale = unit, unit_scale
        self.stream, self.interval, self.clock = stream, interval, clock
        self.start_n = initial
        self.start = clock()
        self.last_print = self.start
        self.postfix = ""
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_print >= self.interval:
            self._print(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(self.clock(), final=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = (self.n - self.start_n) / elapsed
        done = format_amount(self.n, self.unit, self.unit_scale)
        parts = [f"{self.desc}: {done}"]
        if self.total:
            parts[0] += f"/{format_amount(self.total, self.unit, self.unit_scale)} "
            parts[0] += f"({100 * self.n / self.total:.0f}%)"
        speed = format_amount(rate, self.unit, self.unit_scale) if self.unit_scale \
            else f"{rate:.2f} {self.unit}"
        parts.append(f"{speed}/s")
        if final:
            parts.append(f"done in {format_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _print(self, now: float, final: bool = False) -> None:
        self.last_print = now
        print(self.line(now, final), file=self.stream, flush=True)


def progress_iter(items, desc: str, total: int | None = None):
    """Iterate ``items`` with :func:`progress_bar` (total from ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = progress_bar(total, 0, desc)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
