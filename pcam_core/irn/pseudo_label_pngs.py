"""``pcam pseudo-labels``: walk store + background threshold -> pseudo-label PNGs (spec §5.7).

The cheap last step of the pseudo labels, split from ``pcam random-walk`` so that a new
background threshold (a calibration, a sweep) relabels a shard in seconds: it reads only
the walk store and the index, never the IRNet, the CAMs or the images.

Per image of the shard in the walk store: ``WalkRecord.labels`` (bilinear x4 upsample,
crop, one global max normalisation, constant background plane, argmax), values in
{0} U keys. An image of the shard missing from the store (the CAM export skips images
without classes) gets all background if it is a known-empty tile (a scored image whose
mask holds no object) and no label otherwise (no label information: DeepLab leaves it out).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pcam_core.cam.store import exported_ids
from pcam_core.common.atomic_output import atomic_directory
from pcam_core.common.dataset_index import DatasetIndex, read_shard_ids
from pcam_core.common.label_png import write_label_png
from pcam_core.common.progress import progress_bar
from pcam_core.irn.walk_store import WalkStore

# The calibration stage's key for the threshold that applies to walk maps (top level of its JSON).
CALIBRATION_KEY = "walk_bg_threshold"


def check_threshold(value, source: str) -> float:
    """A background threshold in [0, 1]: the maps are max-normalised to [0, 1], so a value
    outside can only mean all-object or all-background labels, i.e. a mistake."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise ValueError(f"{source}: background threshold must be a number in [0, 1], got {value!r}")
    return float(value)


def read_calibrated_threshold(path: str | Path) -> float:
    """The ``walk_bg_threshold`` of a calibration JSON, with errors naming the file."""
    from pcam_core.calibration.calibration_file import read_calibration

    return check_threshold(read_calibration(path, CALIBRATION_KEY), f"{path}: {CALIBRATION_KEY}")


def write_pseudo_labels(index_path: str | Path, shard_path: str | Path, walk_path: str | Path,
                        bg_threshold: float, out_dir: str | Path) -> dict[str, int]:
    """Write ``out_dir/<id>.png`` for the shard's images (see the module docstring)."""
    bg_threshold = check_threshold(bg_threshold, "--bg-threshold")
    index = DatasetIndex.load(index_path)
    ids = read_shard_ids(shard_path)
    palette = index.classes.palette()  # pseudo labels open in the dataset's own colours
    counts = {"shard": len(ids), "written": 0, "from_walk": 0, "known_empty": 0, "skipped": 0}
    with WalkStore(walk_path, shard_ids=ids, required_ids=exported_ids(index, ids)) as store, \
            atomic_directory(out_dir) as tmp:
        bar = progress_bar(len(ids), 0, "pseudo labels")
        for image_id in ids:
            record = index[image_id]
            if image_id in store:
                walk = store[image_id]
                if (walk.height, walk.width) != (record.height, record.width):
                    raise ValueError(f"{walk_path}: image {image_id!r} was walked at {walk.height}x{walk.width} "
                                     f"but is {record.height}x{record.width} in {index_path}; rerun the walk")
                label = walk.labels(bg_threshold)
                counts["from_walk"] += 1
            elif record.known_empty():
                label = np.zeros((record.height, record.width), np.uint8)
                counts["known_empty"] += 1
            else:
                counts["skipped"] += 1
                bar.update(1)
                continue
            write_label_png(tmp / f"{image_id}.png", label, palette)
            counts["written"] += 1
            bar.update(1)
        bar.close()
    return counts


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--shard", required=True, help="shard list: one image id per line")
    parser.add_argument("--walk", required=True, help="the shard's walk store (.h5 from random-walk)")
    threshold = parser.add_mutually_exclusive_group(required=True)
    threshold.add_argument("--calibration",
                           help=f"calibration JSON: its top-level {CALIBRATION_KEY!r} is the threshold")
    threshold.add_argument("--bg-threshold", type=float,
                           help="constant background score in [0, 1] against the normalised walk maps")
    parser.add_argument("--out-dir", required=True, help="output directory of <id>.png pseudo labels")


def main(args) -> int:
    if args.calibration is not None:
        bg_threshold, source = read_calibrated_threshold(args.calibration), args.calibration
    else:
        bg_threshold, source = args.bg_threshold, "--bg-threshold"
    counts = write_pseudo_labels(args.index, args.shard, args.walk, bg_threshold, args.out_dir)
    print(f"pseudo-labels: {counts['written']} pseudo labels written to {args.out_dir} at background "
          f"threshold {bg_threshold:g} (from {source}): {counts['from_walk']} from the walk, "
          f"{counts['known_empty']} known-empty tiles all background; skipped {counts['skipped']} of "
          f"{counts['shard']} without any label")
    return 0
