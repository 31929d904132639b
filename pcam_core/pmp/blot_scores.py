"""``pcam score-blots``: how good and how many the point blots' labels are, on masked images.

Blots label part of each image and leave the rest 255 (unlabelled), which DeepLab ignores.
Scoring them as predictions (255 counted as background, as ``pcam evaluate`` does for
pseudo labels) would mostly measure how little they cover. So two numbers instead:

* quality: one confusion matrix over the split's masked images, counting only the pixels a
  blot labels (and the mask does not void): ``miou`` and ``pixel_accuracy`` of those pixels;
* quantity: ``coverage``, the fraction of the non-void pixels that blots label, and
  ``object_coverage`` / ``background_coverage``, the fraction of the ground-truth object /
  background pixels labelled with their right class.

A masked image without a blot (no click) counts in the coverage as wholly unlabelled. The
JSON has the keys of ``pcam evaluate``'s metrics files (``miou``, ``iou``, ...), so the
summary reads it like any Table 2 file; a split without masks is written unscored.
"""

from __future__ import annotations

import json

import numpy as np

from pcam_core.common.atomic_output import write_text
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.common.label_png import read_label_png
from pcam_core.evaluation.miou import (ConfusionMatrix, find_predictions, metrics_dict,
                                       metrics_markdown, write_unscored)


def score_blots(index: DatasetIndex, split: str, blot_dirs) -> tuple[ConfusionMatrix, dict] | None:
    """(confusion matrix of the labelled pixels, coverage counts); None without masked images."""
    records = [r for r in index.split(split) if r.gt_png]
    if not records:
        return None
    blots = find_predictions(blot_dirs)
    cm = ConfusionMatrix(index.classes.num_classes)
    counts = {"valid": 0, "labelled": 0, "object": 0, "object_right": 0, "background": 0,
              "background_right": 0, "images_without_blots": 0}
    for record in records:
        gt = read_label_png(record.gt_png)
        valid = gt != IGNORE_INDEX
        counts["valid"] += int(valid.sum())
        counts["object"] += int((valid & (gt > 0)).sum())
        counts["background"] += int((gt == 0).sum())
        if record.id not in blots:
            counts["images_without_blots"] += 1
            continue
        label = read_label_png(blots[record.id])
        if label.shape != gt.shape:
            raise ValueError(f"{blots[record.id]}: blots are {label.shape[1]}x{label.shape[0]} but "
                             f"the mask {record.gt_png} is {gt.shape[1]}x{gt.shape[0]}")
        labelled = label != IGNORE_INDEX
        counts["labelled"] += int((labelled & valid).sum())
        counts["object_right"] += int((valid & (gt > 0) & (label == gt)).sum())
        counts["background_right"] += int(((gt == 0) & (label == 0)).sum())
        try:
            cm.update(np.where(labelled, gt, IGNORE_INDEX), np.where(labelled, label, 0))
        except ValueError as error:
            raise ValueError(f"{blots[record.id]}: {error}") from None
    return cm, counts


def _fraction(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--split", required=True, choices=("train", "val"),
                        help="split whose masked images are scored")
    parser.add_argument("--blot-dirs", required=True, nargs="+", help="blot label folders (one per shard)")
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-md", required=True)
    parser.add_argument("--title", default=None)


def main(args) -> int:
    index = DatasetIndex.load(args.index)
    title = args.title or f"point blots ({args.split})"
    scored = score_blots(index, args.split, args.blot_dirs)
    if scored is None:
        metrics = write_unscored(args.out_json, args.out_md, ConfusionMatrix(index.classes.num_classes),
                                 title, index.classes.names, args.split,
                                 extra={"dataset": index.dataset, "labelled_pixels_only": True})
        print(f"{title}: {metrics['note']}")
        return 0
    cm, counts = scored
    extra = {"split": args.split, "dataset": index.dataset, "labelled_pixels_only": True,
             "coverage": _fraction(counts["labelled"], counts["valid"]),
             "object_coverage": _fraction(counts["object_right"], counts["object"]),
             "background_coverage": _fraction(counts["background_right"], counts["background"]),
             "images_without_blots": counts["images_without_blots"]}
    metrics = metrics_dict(cm, title, index.classes.names, extra)
    write_text(args.out_json, json.dumps(metrics, indent=1) + "\n")
    percent = lambda v: "—" if v is None else f"{100 * v:.1f}"
    note = (f"\nOnly the pixels the blots label are scored. They label {percent(extra['coverage'])} % "
            f"of the non-void pixels: {percent(extra['object_coverage'])} % of the object pixels and "
            f"{percent(extra['background_coverage'])} % of the background pixels with their right "
            f"class; {counts['images_without_blots']} masked images have no blot (no click).\n")
    write_text(args.out_md, metrics_markdown(metrics) + note)
    print(f"{title}: mIoU {percent(metrics['miou'])} % on the labelled pixels, which are "
          f"{percent(extra['coverage'])} % of the pixels")
    return 0
