"""Build the dataset index (``index.json``) and the data report from a VOC/SBD/click layout.

The same code reads the generated demo and the real PASCAL VOC 2012 + SBD + "What's the
point" data: the demo is written in the real formats precisely so that this path is tested.
Nothing is dropped silently: every click quirk, every image without a valid click (left out
of training) and every click that lands on another class's or a void pixel is counted in
the report.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pcam_core.atomic_output import write_text
from pcam_core.dataset_index import DatasetIndex, ImageRecord
from pcam_core.voc_classes import IGNORE_INDEX, VOC_CLASSES, read_label_png
from pcam_core.voc_reader import (load_click_json, read_sbd_mask, read_split_list,
                                  train_aug_ids, validate_clicks)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read image header ({error})") from error
    return height, width


def _classes_of(mask: np.ndarray) -> tuple[int, ...]:
    values = np.unique(mask)
    return tuple(int(v) for v in values if 0 < v < IGNORE_INDEX)


def build_index(name: str, voc_root: str | Path, sbd_root: str | Path,
                points: str | Path) -> DatasetIndex:
    """Read the three sources and return the index (with its report attached)."""
    start = time.perf_counter()
    voc_root, sbd_root = Path(voc_root), Path(sbd_root)
    lists = voc_root / "ImageSets" / "Segmentation"
    voc_train = read_split_list(lists / "train.txt")
    voc_val = read_split_list(lists / "val.txt")
    sbd_train = read_split_list(sbd_root / "train.txt")
    sbd_val = read_split_list(sbd_root / "val.txt")
    train_aug = train_aug_ids(voc_train, sbd_train, sbd_val, voc_val)
    splits = {"train": voc_train, "val": voc_val, "train_aug": train_aug}
    membership: dict[str, list[str]] = {}
    for split_name, ids in splits.items():
        for image_id in ids:
            membership.setdefault(image_id, []).append(split_name)

    paths, sizes, masks_info = {}, {}, {}
    quiet = bool(os.environ.get("PCAM_NO_PROGRESS"))
    for image_id in tqdm(membership, desc="reading images and masks", disable=quiet):
        candidates = [voc_root / "JPEGImages" / f"{image_id}.jpg", sbd_root / "img" / f"{image_id}.jpg"]
        image_path = next((p for p in candidates if p.is_file()), None)
        if image_path is None:
            raise FileNotFoundError(f"image {image_id!r} not found: looked for "
                                    f"{candidates[0]} and {candidates[1]}")
        paths[image_id] = image_path
        sizes[image_id] = image_size(image_path)
        gt_png = voc_root / "SegmentationClass" / f"{image_id}.png"
        gt_mat = sbd_root / "cls" / f"{image_id}.mat"
        mask = None
        if gt_png.is_file():
            mask = read_label_png(gt_png)
        elif gt_mat.is_file():
            mask = read_sbd_mask(gt_mat)
        if mask is not None and mask.shape != sizes[image_id]:
            raise ValueError(f"{gt_png if gt_png.is_file() else gt_mat}: mask size {mask.shape} "
                             f"differs from image size {sizes[image_id]} of {image_path}")
        masks_info[image_id] = (gt_png if gt_png.is_file() else None,
                                gt_mat if gt_mat.is_file() else None, mask)

    clicks, click_report = validate_clicks(load_click_json(points), sizes)

    records, noise = [], Counter()
    for image_id, split_names in membership.items():
        gt_png, gt_mat, mask = masks_info[image_id]
        valid = clicks.get(image_id, ())
        if mask is not None:
            for click in valid:
                hit = int(mask[click.pixel])
                noise["on_gt_pixel"] += 1
                if hit == IGNORE_INDEX:
                    noise["on_void"] += 1
                elif hit != click.cls:
                    noise["on_other_class"] += 1
        height, width = sizes[image_id]
        records.append(ImageRecord(
            id=image_id, image=str(paths[image_id]), height=height, width=width,
            splits=tuple(split_names), classes=tuple(sorted({c.cls for c in valid})),
            gt_classes=_classes_of(mask) if mask is not None else (), clicks=valid,
            gt_png=str(gt_png) if gt_png else None, gt_mat=str(gt_mat) if gt_mat else None,
        ))

    index = DatasetIndex(records, splits, dataset=name)
    index.report = data_report(index, click_report.as_dict(), dict(noise),
                               seconds=time.perf_counter() - start,
                               sources={"voc_root": str(voc_root), "sbd_root": str(sbd_root),
                                        "points": str(points)})
    return index


def data_report(index: DatasetIndex, clicks: dict, noise: dict, seconds: float, sources: dict) -> dict:
    """Counts a user needs to trust the data: splits, quirks, points per image, noise."""
    train_aug = index.split("train_aug")
    per_image = np.array([len(r.clicks) for r in train_aug]) if train_aug else np.zeros(0)
    histogram = {str(k): int((per_image == k).sum()) for k in range(5)}
    histogram["5+"] = int((per_image >= 5).sum())
    left_out = [r.id for r in train_aug if not r.classes]
    disagree = sum(1 for r in index.records.values()
                   if r.gt_classes and r.classes and set(r.classes) != set(r.gt_classes))
    return {
        "dataset": index.dataset,
        "sources": sources,
        "images": {name: len(ids) for name, ids in index.splits.items()},
        "val_ids_removed_from_train_aug": "VOC val ids are never in train_aug",
        "clicks": clicks,
        "points_per_image_train_aug": {
            "mean": float(per_image.mean()) if per_image.size else 0.0,
            "median": float(np.median(per_image)) if per_image.size else 0.0,
            "histogram": histogram,
        },
        "train_aug_without_valid_click": {"count": len(left_out), "examples": left_out[:10],
                                          "note": "left out of training (no image-level label)"},
        "click_noise": noise,
        "images_whose_click_classes_differ_from_gt_classes": disagree,
        "images_with_voc_mask": sum(1 for r in index.records.values() if r.gt_png),
        "images_with_sbd_mask_only": sum(1 for r in index.records.values() if r.gt_mat and not r.gt_png),
        "build_seconds": round(seconds, 2),
    }


def report_markdown(report: dict) -> str:
    clicks = report["clicks"]
    ppi = report["points_per_image_train_aug"]
    lines = [f"# Data report ({report['dataset']})", "",
             "| split | images |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in report["images"].items()]
    lines += ["", "## Clicks", "", "| what | count |", "|---|---:|"]
    for key in ("clicks_in_file", "valid_clicks", "out_of_bounds", "negative", "unknown_class",
                "malformed", "empty_ids", "missing_ids", "ids_not_in_dataset"):
        lines.append(f"| {key.replace('_', ' ')} | {clicks[key]:,} |")
    left = report["train_aug_without_valid_click"]
    lines.append(f"| train_aug images without a valid click (left out of training) | {left['count']:,} |")
    noise = report["click_noise"]
    if noise.get("on_gt_pixel"):
        lines.append(f"| valid clicks on a pixel of another GT class | {noise.get('on_other_class', 0):,} "
                     f"({100 * noise.get('on_other_class', 0) / noise['on_gt_pixel']:.1f}%) |")
        lines.append(f"| valid clicks on a void GT pixel | {noise.get('on_void', 0):,} "
                     f"({100 * noise.get('on_void', 0) / noise['on_gt_pixel']:.1f}%) |")
    lines += ["", f"Points per train_aug image: mean {ppi['mean']:.2f}, median {ppi['median']:.0f}.", "",
              "| clicks | " + " | ".join(ppi["histogram"]) + " |",
              "|---|" + "---:|" * len(ppi["histogram"]),
              "| images | " + " | ".join(str(v) for v in ppi["histogram"].values()) + " |",
              "", "## Clicks per class", "", "| class | clicks |", "|---|---:|"]
    lines += [f"| {VOC_CLASSES[int(k)]} | {v:,} |" for k, v in clicks["clicks_per_class"].items()]
    if clicks.get("examples"):
        lines += ["", "Examples of images with each quirk:", ""]
        lines += [f"- {quirk.replace('_', ' ')}: {', '.join(ids)}" for quirk, ids in clicks["examples"].items()]
    lines += ["", f"Built in {report['build_seconds']} s from {report['sources']['voc_root']}."]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True, choices=["demo", "voc2012"], help="dataset name")
    parser.add_argument("--voc-root", required=True, help=".../VOCdevkit/VOC2012")
    parser.add_argument("--sbd-root", required=True, help=".../benchmark_RELEASE/dataset")
    parser.add_argument("--points", required=True, help="the click JSON (pascal2012_trainval_main.json)")
    parser.add_argument("--out", required=True, help="index.json to write")
    parser.add_argument("--report-json", required=True, help="data report (JSON)")
    parser.add_argument("--report-md", required=True, help="data report (Markdown)")


def main(args) -> int:
    index = build_index(args.name, args.voc_root, args.sbd_root, args.points)
    index.save(args.out)
    write_text(args.report_json, json.dumps(index.report, indent=1) + "\n")
    write_text(args.report_md, report_markdown(index.report))
    print(report_markdown(index.report))
    return 0
