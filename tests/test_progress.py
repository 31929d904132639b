"""Progress output: plain periodic lines in a log file, a tqdm bar on a terminal, silence on request."""

from __future__ import annotations

import io

import pytest

from pcam_core.common import progress
from pcam_core.common.progress import LineProgress, format_amount, progress_bar, progress_iter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_file_gets_one_line_per_interval_and_no_carriage_returns():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(100, 0, "train-cam pcam", stream=stream, interval=30, clock=clock)
    for _ in range(100):
        clock.now += 1.0  # one step a second: a line at 30, 60, 90 s and one at the end
        bar.update(1)
        bar.set_postfix(loss="0.41")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("train-cam pcam: 30/100 (30%), 1.00 it/s, ETA 01:10, loss=0.41")
    assert lines[-1].startswith("train-cam pcam: 100/100 (100%), 1.00 it/s, done in 01:40")


def test_a_resumed_bar_counts_its_rate_from_the_resume_point():
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(100, 50, "train", stream=stream, interval=10, clock=clock)
    clock.now = 10.0
    bar.update(5)
    assert "55/100 (55%), 0.50 it/s, ETA 01:30" in stream.getvalue()


def test_bytes_use_decimal_prefixes_and_an_unknown_total_has_no_eta():
    assert format_amount(1536, "B", True) == "1.5 kB"
    assert format_amount(2_500_000, "B", True) == "2.5 MB"
    assert format_amount(12, "B", True) == "12 B"
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(None, 0, "file.tar", unit="B", unit_scale=True, stream=stream, interval=1,
                       clock=clock)
    clock.now = 2.0
    bar.update(3_000_000)
    assert stream.getvalue().strip() == "file.tar: 3.0 MB, 1.5 MB/s"


def test_not_a_terminal_means_line_progress(monkeypatch):
    monkeypatch.delenv("PCAM_NO_PROGRESS", raising=False)
    assert isinstance(progress_bar(10, 0, "x", stream=io.StringIO()), LineProgress)


def test_a_terminal_gets_tqdm(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("PCAM_NO_PROGRESS", raising=False)
    bar = progress_bar(10, 0, "x", stream=Terminal())
    assert type(bar).__name__ == "tqdm"
    bar.close()


def test_no_progress_silences_both(monkeypatch):
    monkeypatch.setenv("PCAM_NO_PROGRESS", "1")
    stream = io.StringIO()
    assert list(progress_iter([1, 2, 3], "x")) == [1, 2, 3]
    bar = progress_bar(3, 0, "x", stream=stream)
    bar.update(3)
    bar.close()
    assert stream.getvalue() == ""


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PCAM_PROGRESS_INTERVAL", "5")
    assert progress._interval() == 5.0
    monkeypatch.setenv("PCAM_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="PCAM_PROGRESS_INTERVAL"):
        progress._interval()
