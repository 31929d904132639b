"""The calibration's contract with the stages that use it: the JSON format, which images a
calibration measures on, and reading a threshold back. Kept apart from the sweeps, so that
the many readers of a calibration file do not depend on the code that measures it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from pcam_core.common.dataset_index import DatasetIndex, ImageRecord, hash_ordered

CALIBRATION_FORMAT = "pcam-calibration/1"


def calibration_records(index: DatasetIndex, available: Iterable[str], max_images: int) -> list[ImageRecord]:
    """Masked train images that have maps, at most ``max_images``, chosen by a hash of the id.

    A hash order (not file order) gives a subset that does not depend on how the dataset
    lists its images, and adding images never changes which of the old ones are chosen.
    """
    available = set(available)
    train = [index[i] for i in index.splits.get("train", [])]
    records = hash_ordered(r for r in train if (r.gt_png or r.gt_mat) and r.id in available)
    return records[: max(0, int(max_images))]


def read_calibration(path: str | Path, key: str) -> float:
    """One threshold from a calibration JSON; an error names the file when it is not there."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the calibration file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or key not in data:
        raise ValueError(f"{path}: not a pcam calibration file holding {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{path}: {key} must be a threshold in [0, 1], got {value!r}")
    return float(value)
