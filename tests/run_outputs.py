"""Two runs' outputs, compared as a user would: every weight file, store, label, prediction,
calibration and metric must be the same; only timings and logs may differ."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Timings and log text legitimately differ: logs, benchmarks, the report, the training logs
# (a resumed run repeats steps) and the data report's prose (its JSON is compared).
SKIPPED_FOLDERS = {"logs", "benchmarks", "report"}
SKIPPED_FILES = {"data/data_report.md"}


def _outputs(results: Path) -> dict[str, Path]:
    found = {}
    for path in results.rglob("*"):
        name = path.relative_to(results).as_posix()
        if (path.is_file() and path.relative_to(results).parts[0] not in SKIPPED_FOLDERS
                and name not in SKIPPED_FILES and not path.name.endswith(".jsonl")):
            found[name] = path
    return found


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _same(a: Path, b: Path) -> bool:
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".json":
        return _without_timings(json.loads(a.read_text())) == _without_timings(json.loads(b.read_text()))
    if a.suffix == ".pt":
        first, second = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
        return _same_checkpoint(first, second)
    return False


def _same_checkpoint(first, second) -> bool:
    if isinstance(first, torch.Tensor):
        return isinstance(second, torch.Tensor) and torch.equal(first, second)
    if isinstance(first, dict):
        return (isinstance(second, dict) and first.keys() == second.keys()
                and all(_same_checkpoint(first[k], second[k]) for k in first))
    return first == second


def differences(expected: Path, got: Path) -> list[str]:
    want, have = _outputs(expected), _outputs(got)
    problems = [f"missing: {name}" for name in sorted(set(want) - set(have))]
    problems += [f"left behind: {name}" for name in sorted(set(have) - set(want))]
    problems += [f"differs: {name}" for name in sorted(set(want) & set(have)) if not _same(want[name], have[name])]
    return problems
