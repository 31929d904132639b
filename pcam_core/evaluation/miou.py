"""Semantic-segmentation scoring: one confusion matrix per split, IoU per class, mIoU.

The protocol follows IRN (chainercv) and VainF (spec §7.1, pitfall 21): ONE C x C confusion
matrix accumulated over the whole split (rows = ground truth, columns = prediction), GT 255
(void) ignored, a predicted 255 mapped to 0 (IRN does this before scoring), and
mIoU = nanmean of the per-class IoUs, so a class absent from both GT and predictions does not
count. Per-image IoUs are never averaged.

Metrics files (``write_metrics``):

* JSON: ``title``, ``num_images``, ``miou`` and ``pixel_accuracy`` as fractions in [0, 1],
  ``iou`` = {class name: fraction or null (absent class)}, ``confusion_matrix`` (C lists
  of C pixel counts, rows = GT), plus any ``extra`` keys (e.g. split, thresholds).
* Markdown: the same numbers in percent, one table with the class names and the mean.

C = the dataset's classes including the background (21 for VOC), from the index. A split
with no ground-truth mask is written as unscored: ``miou`` null and a ``note`` saying that
mIoU needs masks (``write_unscored``), so a dataset without masks still runs end to end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pcam_core.common.atomic_output import write_text
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.label_png import find_label_files, read_label_png


class ConfusionMatrix:
    """Pixel counts ``matrix[gt, pred]`` accumulated over any number of images."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.num_images = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one image. ``gt`` may hold 255 (void, ignored); ``pred`` must be 0..C-1 or 255."""
        gt = np.asarray(gt)
        pred = np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
        gt = gt.astype(np.int64).ravel()
        pred = pred.astype(np.int64).ravel()
        # IRN maps a predicted 255 to background before scoring; anything else out of range is
        # a bug upstream (e.g. a 0-based/1-based key slip) and must not be scored silently.
        pred = np.where(pred == IGNORE_INDEX, 0, pred)
        bad = (pred < 0) | (pred >= self.num_classes)
        if bad.any():
            raise ValueError(f"prediction holds values outside 0..{self.num_classes - 1} "
                             f"(and 255): {sorted(np.unique(pred[bad]).tolist())[:10]}")
        bad_gt = (gt != IGNORE_INDEX) & ((gt < 0) | (gt >= self.num_classes))
        if bad_gt.any():
            raise ValueError(f"ground truth holds values outside 0..{self.num_classes - 1} "
                             f"and 255: {sorted(np.unique(gt[bad_gt]).tolist())[:10]}")
        keep = gt != IGNORE_INDEX
        flat = gt[keep] * self.num_classes + pred[keep]
        self.matrix += np.bincount(flat, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)
        self.num_images += 1

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix (e.g. from a worker process)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix
        self.num_images += other.num_images

    def iou(self) -> np.ndarray:
        """IoU per class; nan for a class absent from both GT and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes present in GT or predictions (nan when there are none)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of non-void pixels predicted correctly (nan with no scored pixel)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")


def _number(value: float) -> float | None:
    """JSON has no NaN: absent classes become null."""
    return None if not np.isfinite(value) else float(value)


def metrics_dict(cm: ConfusionMatrix, title: str, class_names, extra: dict | None = None) -> dict:
    """Everything worth keeping about one scoring run, JSON-ready."""
    names = tuple(class_names)
    if len(names) != cm.num_classes:
        raise ValueError(f"{len(names)} class names for a {cm.num_classes}-class confusion matrix")
    result = {
        "title": title,
        "num_images": cm.num_images,
        "miou": _number(cm.miou()),
        "pixel_accuracy": _number(cm.pixel_accuracy()),
        "iou": {name: _number(v) for name, v in zip(names, cm.iou())},
        "confusion_matrix": cm.matrix.tolist(),
    }
    if extra:
        clash = set(extra) & set(result)
        if clash:
            raise ValueError(f"extra keys clash with metric keys: {sorted(clash)}")
        result.update(extra)
    return result


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def metrics_markdown(metrics: dict) -> str:
    """Markdown report: one row of per-class IoU (percent) and the mean, class-id order.

    Many classes (30, 254) make a row too wide to read: past 25 the table is one row per class.
    """
    names = list(metrics["iou"])
    lines = [f"# {metrics['title']}", ""]
    if metrics.get("note"):
        return "\n".join(lines + [metrics["note"]]) + "\n"
    lines.append(f"mIoU **{_percent(metrics['miou'])}** % over {metrics['num_images']} images; "
                 f"pixel accuracy {_percent(metrics['pixel_accuracy'])} %. "
                 "One confusion matrix over the split; void pixels ignored; "
                 "'—' = class absent from GT and predictions (left out of the mean).")
    lines.append("")
    if len(names) > 25:
        lines += ["| class | IoU |", "|---|---:|"]
        lines += [f"| {n} | {_percent(metrics['iou'][n])} |" for n in names]
        lines.append(f"| **mean** | {_percent(metrics['miou'])} |")
        return "\n".join(lines) + "\n"
    lines.append("| " + " | ".join(names + ["mean"]) + " |")
    lines.append("|" + "---:|" * (len(names) + 1))
    values = [_percent(metrics["iou"][n]) for n in names] + [_percent(metrics["miou"])]
    lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def write_metrics(json_path: str | Path, md_path: str | Path, cm: ConfusionMatrix, title: str,
                  class_names, extra: dict | None = None) -> dict:
    """Write the JSON and Markdown reports atomically; return the metrics dict."""
    metrics = metrics_dict(cm, title, class_names, extra)
    write_text(json_path, json.dumps(metrics, indent=1) + "\n")
    write_text(md_path, metrics_markdown(metrics))
    return metrics


def unscored_note(split: str) -> str:
    return (f"not scored: no image of the {split} split has a ground-truth mask. mIoU needs masks; "
            "add label PNGs for some images (dataset.masks) to score this stage.")


def write_unscored(json_path: str | Path, md_path: str | Path, cm: ConfusionMatrix, title: str,
                   class_names, split: str, extra: dict | None = None) -> dict:
    """Metrics files for a split without ground truth: mIoU null and the reason, not an error."""
    return write_metrics(json_path, md_path, cm, title, class_names,
                         extra={"split": split, "note": unscored_note(split), **(extra or {})})


# ------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--split", required=True, choices=("train", "val", "train_aug"),
                        help="split whose records with a ground-truth mask are scored")
    parser.add_argument("--pred-dirs", required=True, nargs="+",
                        help="directories holding <id>.png predictions (e.g. one per shard)")
    parser.add_argument("--out-json", required=True, help="metrics JSON")
    parser.add_argument("--out-md", required=True, help="metrics Markdown table")
    parser.add_argument("--title", default=None, help="report title; None derives one from the first prediction directory")


def find_predictions(pred_dirs: list[str | Path]) -> dict[str, Path]:
    """Map image id -> prediction PNG; the first directory listing an id wins."""
    found: dict[str, Path] = {}
    for directory in pred_dirs:
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"prediction directory {directory} does not exist")
        for image_id, path in find_label_files(directory).items():
            found.setdefault(image_id, path)
    return found


def evaluate_split(index, split: str, pred_dirs: list[str | Path]) -> ConfusionMatrix | None:
    """Score every record of ``split`` that has a GT mask (None when none has); a missing
    prediction is an error."""
    records = [r for r in index.split(split) if r.gt_png]
    if not records:
        return None
    predictions = find_predictions(pred_dirs)
    missing = [r.id for r in records if r.id not in predictions]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(records)} {split} images have no prediction in "
            f"{[str(d) for d in pred_dirs]}, e.g. {missing[:5]}")
    cm = ConfusionMatrix(index.classes.num_classes)
    for record in records:
        gt = read_label_png(record.gt_png)
        pred_path = predictions[record.id]
        pred = read_label_png(pred_path)
        if gt.shape != pred.shape:
            raise ValueError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) "
                             f"but the ground truth {record.gt_png} is {gt.shape[1]}x{gt.shape[0]}")
        try:
            cm.update(gt, pred)
        except ValueError as error:
            raise ValueError(f"{pred_path}: {error}") from None
    return cm


def main(args: argparse.Namespace) -> int:
    from pcam_core.common.dataset_index import DatasetIndex

    index = DatasetIndex.load(args.index)
    cm = evaluate_split(index, args.split, args.pred_dirs)
    title = args.title or f"{Path(args.pred_dirs[0]).parent.name} on {args.split}"
    if cm is None:
        metrics = write_unscored(args.out_json, args.out_md, ConfusionMatrix(index.classes.num_classes),
                                 title, index.classes.names, args.split, extra={"dataset": index.dataset})
        print(f"{title}: {metrics['note']}")
        return 0
    metrics = write_metrics(args.out_json, args.out_md, cm, title, index.classes.names,
                            extra={"split": args.split, "dataset": index.dataset})
    print(f"{title}: mIoU {_percent(metrics['miou'])} % over {cm.num_images} images")
    return 0
