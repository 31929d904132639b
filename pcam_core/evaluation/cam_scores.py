"""``pcam evaluate-cams``: mIoU of thresholded CAMs against the ground-truth masks (Table 1).

Spec §2.6 / §7: per image, argmax over [tau plane; high_res] mapped through [0] + keys
(segmentation ids, ``CamRecord.label_ids``), one confusion matrix over the whole split
(``evaluation.ConfusionMatrix``), every record of the split that has a GT mask PNG. A split
without any mask is written as unscored (mIoU null, with the reason), not an error.
tau comes from the calibration step (pcam_core/calibration/thresholds.py); the paper's fixed values are
0.15 for CAMs (IRN) and 0.30 for PCAMs (decision D3).

An image with no classes to export (an all-background GT) has no maps by design and is
predicted all background. Any other missing map is an error that gives the count and
examples: scoring a subset would silently change the number.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pcam_core.cam.store import CamRecord, CamStore
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.common.progress import progress_bar


def threshold_labels(record: CamRecord, threshold: float) -> np.ndarray:
    """uint8 (H, W) segmentation ids: argmax over [threshold; high_res] through [0] + keys."""
    maps = record.high_res
    background = np.full((1, *maps.shape[1:]), threshold, dtype=maps.dtype)
    index = np.argmax(np.concatenate([background, maps], axis=0), axis=0)
    return record.label_ids()[index].astype(np.uint8)


def evaluate_cams(index_path: str | Path, split: str, stores: Sequence[str | Path], threshold: float,
                  out_json: str | Path, out_md: str | Path) -> dict:
    """Score the split; writes the JSON + Markdown tables and returns the summary numbers."""
    from pcam_core.evaluation.miou import ConfusionMatrix, write_metrics, write_unscored

    index = DatasetIndex.load(index_path)
    records = [r for r in index.split(split) if r.gt_png]
    title = f"CAM mIoU ({split}, threshold {threshold})"
    cm = ConfusionMatrix(index.classes.num_classes)
    if not records:
        metrics = write_unscored(out_json, out_md, cm, title, index.classes.names, split,
                                 extra={"threshold": threshold, "stores": [str(s) for s in stores]})
        print(f"evaluate-cams: {metrics['note']}", file=sys.stderr)
        return {"miou": None, "split": split, "images": 0}
    with CamStore(list(stores)) as store:
        missing = [r.id for r in records if r.id not in store and r.export_classes()]
        if missing:
            raise KeyError(f"{len(missing)} of {len(records)} {split} images have no CAMs in the "
                           f"{len(stores)} store(s), e.g. {missing[:5]}")
        without_classes = 0
        bar = progress_bar(len(records), 0, f"evaluate-cams {split}")
        for record in records:
            gt = record.load_gt_mask()
            if record.id in store:
                pred = threshold_labels(store[record.id], threshold)
            else:
                without_classes += 1
                pred = np.zeros_like(gt)
            if pred.shape != gt.shape:
                raise ValueError(f"{record.id}: CAM size {pred.shape} differs from its GT {gt.shape}")
            cm.update(gt, pred)
            bar.update(1)
        bar.close()
    extra = {"split": split, "threshold": threshold, "images": len(records),
             "images_without_classes": without_classes, "stores": [str(s) for s in stores]}
    write_metrics(out_json, out_md, cm, title, index.classes.names, extra=extra)
    miou = float(cm.miou())
    print(f"evaluate-cams: {split} mIoU {100 * miou:.2f} on {len(records)} images "
          f"(threshold {threshold}; {without_classes} without classes scored as background)",
          file=sys.stderr)
    return {"miou": miou, **extra}


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--split", required=True, choices=("train", "val"), help="split to score")
    parser.add_argument("--stores", required=True, nargs="+", help="HDF5 CAM stores (all shards)")
    tau = parser.add_mutually_exclusive_group(required=True)
    tau.add_argument("--threshold", type=float, help="background plane tau (paper: 0.15 CAM, 0.30 PCAM)")
    tau.add_argument("--calibration", help="calibration JSON of the CAM step (its cam_eval_threshold)")
    parser.add_argument("--out-json", required=True, help="metrics JSON")
    parser.add_argument("--out-md", required=True, help="metrics Markdown table")


def main(args) -> int:
    threshold = args.threshold
    if args.calibration:
        from pcam_core.calibration.calibration_file import read_calibration

        threshold = read_calibration(args.calibration, "cam_eval_threshold")
    evaluate_cams(args.index, args.split, args.stores, threshold, args.out_json, args.out_md)
    return 0
