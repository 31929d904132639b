"""``pcam point-blots``: the PMP point blots of one shard's images as label PNGs.

Writes ``out_dir/<id>.png`` (palette PNG in the dataset's class colours) for every image of
the shard that has a click: the click classes and background (0) where blots cover the
image, 255 (unlabelled) elsewhere (``pcam_core/pmp/point_blots.py``). DeepLab trains on them
with the unlabelled pixels ignored (``pcam train-deeplab``, which reads the train_aug
images); val images get blots too when they have clicks, so that the blots can be scored
there, but no stage trains on them. An image without a click gets no file: it has no label.

A JSON report beside the labels (``--report``) counts, per shard, images, points, accepted
expansions and the labelled fraction; ``pcam score-blots`` scores the labels on masks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pcam_core.cli import json_object
from pcam_core.common.atomic_output import atomic_directory, write_text
from pcam_core.common.dataset_index import DatasetIndex, read_shard_ids
from pcam_core.common.label_png import write_label_png
from pcam_core.common.progress import progress_bar
from pcam_core.pmp.point_blots import BlotSettings, image_rng, point_blots


def write_point_blots(index: DatasetIndex, ids: list[str], settings: BlotSettings,
                      out_dir: str | Path) -> dict:
    """Write the shard's blot PNGs into ``out_dir`` (as a whole, atomically); returns counts."""
    palette = index.classes.palette()
    counts = {"shard": len(ids), "written": 0, "without_clicks": 0, "object_points": 0,
              "background_points": 0, "accepted": 0, "candidates": 0, "pixels": 0,
              "labelled_pixels": 0}
    started = time.perf_counter()
    with atomic_directory(out_dir) as tmp:
        bar = progress_bar(len(ids), 0, "point blots")
        for image_id in ids:
            record = index[image_id]
            bar.update(1)
            if not record.clicks:
                counts["without_clicks"] += 1
                continue
            rgb = index.read_image(record)
            clicks = [(*click.pixel, click.cls) for click in record.clicks]
            result = point_blots(rgb, clicks, settings, image_rng(settings.seed, image_id))
            write_label_png(tmp / f"{image_id}.png", result.label, palette)
            counts["written"] += 1
            counts["object_points"] += result.object_points
            counts["background_points"] += result.background_points
            counts["accepted"] += result.accepted
            counts["candidates"] += result.candidates
            counts["pixels"] += result.label.size
            counts["labelled_pixels"] += int(np.count_nonzero(result.label != 255))
        bar.close()
    counts["seconds"] = round(time.perf_counter() - started, 2)
    return counts


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--shard", required=True, help="shard list: one image id per line")
    parser.add_argument("--params", type=json_object, required=True,
                        help="the config's pmp section as JSON")
    parser.add_argument("--out-dir", required=True, help="output directory of <id>.png blot labels")
    parser.add_argument("--report", default=None, help="JSON counts of the shard (optional)")


def main(args) -> int:
    index = DatasetIndex.load(args.index)
    settings = BlotSettings.from_params(args.params)
    counts = write_point_blots(index, read_shard_ids(args.shard), settings, args.out_dir)
    if args.report:
        write_text(args.report, json.dumps(counts, indent=1) + "\n")
    labelled = counts["labelled_pixels"] / max(counts["pixels"], 1)
    print(f"point-blots: {counts['written']} blot labels in {args.out_dir} from "
          f"{counts['object_points']} clicks and {counts['background_points']} background points; "
          f"{counts['accepted']} of {counts['candidates']} candidate blobs accepted; "
          f"{100 * labelled:.1f} % of the pixels labelled; {counts['without_clicks']} of "
          f"{counts['shard']} images without a click skipped; {counts['seconds']} s")
    return 0
