"""The README's demo table is generated from a run, names its commit, and refuses dirty code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import readme_results  # noqa: E402


def _run(tmp_path: Path, dirty: bool = False) -> Path:
    run = tmp_path / "work" / "results" / "demo"
    (run / "report").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "miou": {"pcam": {"cam": {"train": 0.7, "val": 0.654}, "refined": {"train": 0.8, "val": 0.81},
                          "final": {"val": 0.855}, "final_true_classes": {"val": None}}},
        "checks": [{"check": "CAM < PCAM", "status": "FAIL"}, {"check": "x", "status": "pass"}],
        "quality_gates": {"pcam": [{"title": "IRNet boundary", "status": "warn"}]}}))
    (run / "report" / "manifest.json").write_text(json.dumps({
        "git": {"commit": "0123456789abcdef", "dirty": dirty},
        "config": {"dataset": {"demo": {"style": "shape", "seed": 1, "num_val": 60, "num_train": 160}},
                   "calibration": {"mode": "auto"}}}))
    (tmp_path / "work" / "demo_pipeline.json").write_text(json.dumps({"wall_s": 501.2, "peak_rss_mib": 3482,
                                                                     "cores": "2"}))
    return tmp_path / "work"


def test_block_holds_the_runs_numbers_commit_and_failures(tmp_path):
    block = readme_results.results_block(_run(tmp_path))
    assert "commit `0123456`" in block and "style shape, seed 1" in block and "501 s wall" in block
    assert "| pcam | 70.0 / 65.4 | 80.0 / 81.0 | 85.5 | — |" in block
    assert "2 ordering checks 1 fail (CAM < PCAM)" in block and "1 warn (IRNet boundary)" in block


def test_readme_is_rewritten_between_the_markers_and_checked(tmp_path):
    work = _run(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_results.BEGIN}\nold numbers\n{readme_results.END}\nrest\n")
    assert readme_results.main(["--workdir", str(work), "--readme", str(readme), "--check"]) == 1
    assert readme_results.main(["--workdir", str(work), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("intro\n") and text.endswith("\nrest\n")
    assert readme_results.main(["--workdir", str(work), "--readme", str(readme), "--check"]) == 0


def test_a_run_of_uncommitted_code_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no clean commit"):
        readme_results.results_block(_run(tmp_path, dirty=True))
