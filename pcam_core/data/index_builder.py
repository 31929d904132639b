"""Build the dataset index (``index.json``) and the data report from a VOC/SBD/click layout.

The same code reads the generated demo and the real PASCAL VOC 2012 + SBD + "What's the
point" data: the demo is written in the real formats precisely so that this path is tested.
Nothing is dropped silently: every click quirk, every image without a valid click (left out
of training unless its XML labels it) and every click that lands on another class's or a
void pixel is counted in the report. Images listed but missing or that cannot be decoded
(each is decoded once here, so no later stage meets a truncated file) are left out and
counted, or with ``--strict`` an error (``bad_input``); the counts end the stage log.

Image-level labels (``ImageRecord.classes``) are the classes of VOC's ``Annotations/<id>.xml``
when that folder exists (every object, difficult and truncated included: IRN's
``cls_labels.npy``), else the classes of the valid clicks. With XML labels a class whose only
click was unusable stays a positive, and a click of a class the XML does not list is dropped;
the report's ``image_labels`` section counts both.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pcam_core.common.progress import progress_iter

from pcam_core.common.atomic_output import write_text
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.common.image_io import image_size
from pcam_core.common.label_png import read_label_png
from pcam_core.data.bad_input import (InputProblems, check_mask, require_nonempty_splits,
                                     require_training_images, skipped_summary)
from pcam_core.data.data_report import count_click_noise, data_report, report_markdown
from pcam_core.data.voc_reader import (NUM_OBJECT_CLASSES, load_click_json, read_annotation_folder,
                                       read_sbd_mask, read_split_list, train_aug_ids,
                                       validate_clicks, voc_class_list)

DATASETS = ("demo", "voc2012", "custom")
IMAGE_LABEL_EXAMPLES = 10  # images with disagreeing XML and click classes quoted in the report


def classes_of(mask: np.ndarray) -> tuple[int, ...]:
    """Object class ids present in a ground-truth mask (void and background excluded)."""
    values = np.unique(mask)
    return tuple(int(v) for v in values if 0 < v < IGNORE_INDEX)


@dataclass
class ImageLabelCounts:
    """Where the image-level labels came from and how XML and clicks disagreed."""

    source: str  # "xml" or "clicks"
    note: str = ""
    images_without_xml: int = 0  # kept their click classes
    clicks_class_not_in_xml: int = 0  # valid clicks dropped: the XML lists no such object
    xml_classes_without_click: int = 0  # (image, class) pairs labelled by the XML alone
    images_with_disagreement: int = 0  # XML classes != classes of the valid clicks
    examples: list = field(default_factory=list)

    def reconcile(self, image_id: str, xml_classes: tuple[int, ...], valid) -> tuple:
        """The XML classes and the clicks kept (those of an XML class), counting the rest."""
        kept = tuple(c for c in valid if c.cls in xml_classes)
        clicked = {c.cls for c in valid}
        self.clicks_class_not_in_xml += len(valid) - len(kept)
        self.xml_classes_without_click += len(set(xml_classes) - clicked)
        if clicked != set(xml_classes):
            self.images_with_disagreement += 1
            if len(self.examples) < IMAGE_LABEL_EXAMPLES:
                self.examples.append({"id": image_id, "xml_classes": list(xml_classes),
                                      "click_classes": sorted(clicked)})
        return tuple(xml_classes), kept

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def build_index(name: str, voc_root: str | Path, sbd_root: str | Path,
                points: str | Path, strict: bool = False) -> DatasetIndex:
    """Read the three sources and return the index (with its report attached).

    An image listed in a split but missing, or that cannot be decoded, is left out of every
    split and counted, as is every unusable click; ``strict`` makes them one error instead
    (``bad_input``).
    """
    start = time.perf_counter()
    voc_root, sbd_root = Path(voc_root), Path(sbd_root)
    lists = voc_root / "ImageSets" / "Segmentation"
    voc_train = read_split_list(lists / "train.txt")
    voc_val = read_split_list(lists / "val.txt")
    sbd_train = read_split_list(sbd_root / "train.txt")
    sbd_val = read_split_list(sbd_root / "val.txt")
    train_aug = train_aug_ids(voc_train, sbd_train, sbd_val, voc_val)
    listed = {"train": voc_train, "val": voc_val, "train_aug": train_aug}
    membership: dict[str, list[str]] = {}
    for split_name, ids in listed.items():
        for image_id in ids:
            membership.setdefault(image_id, []).append(split_name)

    problems = InputProblems()
    paths, sizes, masks_info = {}, {}, {}
    for image_id in progress_iter(membership, "reading images and masks"):
        candidates = [voc_root / "JPEGImages" / f"{image_id}.jpg", sbd_root / "img" / f"{image_id}.jpg"]
        image_path = next((p for p in candidates if p.is_file()), None)
        if image_path is None:
            problems.note("image_listed_but_missing", f"{image_id} (in {', '.join(membership[image_id])}): "
                          f"neither {candidates[0]} nor {candidates[1]} exists")
            continue
        try:
            sizes[image_id] = image_size(image_path, decode=True)
        except ValueError as error:
            problems.note("image_cannot_be_decoded", str(error))
            continue
        paths[image_id] = image_path
        gt_png = voc_root / "SegmentationClass" / f"{image_id}.png"
        gt_mat = sbd_root / "cls" / f"{image_id}.mat"
        mask = None
        if gt_png.is_file():
            mask = read_label_png(gt_png)
        elif gt_mat.is_file():
            mask = read_sbd_mask(gt_mat)
        if mask is not None:
            check_mask(mask, gt_png if gt_png.is_file() else gt_mat, sizes[image_id], image_path,
                       NUM_OBJECT_CLASSES)
        masks_info[image_id] = (gt_png if gt_png.is_file() else None,
                                gt_mat if gt_mat.is_file() else None, mask)
    splits = {split_name: [i for i in ids if i in sizes] for split_name, ids in listed.items()}
    skipped = set(membership) - set(sizes)

    clicks, click_report = validate_clicks(load_click_json(points), sizes, problems, skipped,
                                           click_file=Path(points).name)
    annotations = voc_root / "Annotations"
    if annotations.is_dir():
        xml_classes = read_annotation_folder(annotations, sizes)
        labels = ImageLabelCounts("xml", note=f"classes of {annotations}/<id>.xml (every object, "
                                  "difficult and truncated included); images without one keep "
                                  "their click classes")
    else:
        xml_classes = None
        labels = ImageLabelCounts("clicks", note=f"no {annotations} folder: the image-level labels "
                                  "are the classes of the valid clicks",
                                  images_without_xml=len(sizes))

    records, noise = [], Counter()
    for image_id in sizes:
        gt_png, gt_mat, mask = masks_info[image_id]
        valid = clicks.get(image_id, ())
        classes = tuple(sorted({c.cls for c in valid}))
        if xml_classes is not None:
            if image_id in xml_classes:
                classes, valid = labels.reconcile(image_id, xml_classes[image_id], valid)
            else:
                labels.images_without_xml += 1
        if mask is not None:
            count_click_noise(noise, mask, valid)
        if "train_aug" in membership[image_id] and not classes:
            problems.note("training_image_without_click", f"{image_id} ({paths[image_id]})")
        height, width = sizes[image_id]
        records.append(ImageRecord(
            id=image_id, image=str(paths[image_id]), height=height, width=width,
            splits=tuple(membership[image_id]), classes=classes,
            gt_classes=classes_of(mask) if mask is not None else (), clicks=valid,
            gt_png=str(gt_png) if gt_png else None, gt_mat=str(gt_mat) if gt_mat else None,
        ))

    problems.refuse_if_strict(strict)
    require_nonempty_splits(listed, splits, problems)
    require_training_images(len(splits["train_aug"]), sum(1 for r in records if r.classes
                                                          and "train_aug" in r.splits), problems)
    index = DatasetIndex(records, splits, dataset=name, classes=voc_class_list())
    index.report = data_report(index, click_report.as_dict(), dict(noise),
                               seconds=time.perf_counter() - start,
                               sources={"voc_root": str(voc_root), "sbd_root": str(sbd_root),
                                        "points": str(points)},
                               image_labels=labels.as_dict(), skipped=problems.section(strict))
    return index


def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--name", required=True, choices=DATASETS,
                        help="demo / voc2012 (VOC layout + 'What's the point' JSON) or custom (your own "
                             "images, classes and clicks)")
    parser.add_argument("--voc-root", help="demo/voc2012: .../VOCdevkit/VOC2012")
    parser.add_argument("--sbd-root", help="demo/voc2012: .../benchmark_RELEASE/dataset")
    parser.add_argument("--points", help="demo/voc2012: the click JSON (pascal2012_trainval_main.json)")
    parser.add_argument("--params", type=json_object, default={},
                        help="custom: the config's dataset section as JSON (images, classes, clicks, "
                             "clicks_format, clicks_class_column, masks, val, val_fraction)")
    parser.add_argument("--image-reading", type=json_object, default={},
                        help="the config's dataset.image_reading section as JSON (how 16-bit and "
                             "transparent images become 8-bit RGB)")
    parser.add_argument("--strict", action="store_true",
                        help="stop with one error listing every skippable problem (undecodable or "
                             "missing images, unusable clicks, training images without a click) "
                             "instead of skipping and counting them (the config's strict)")
    parser.add_argument("--out", required=True, help="index.json to write")
    parser.add_argument("--report-json", required=True, help="data report (JSON)")
    parser.add_argument("--report-md", required=True, help="data report (Markdown)")


def main(args) -> int:
    from pcam_core.common.image_io import ImageReading

    reading = ImageReading.from_json(args.image_reading)
    if args.name == "custom":
        from pcam_core.data.custom_dataset import build_custom_index

        index = build_custom_index(args.params, reading, progress=progress_iter, strict=args.strict)
    else:
        missing = [flag for flag, value in (("--voc-root", args.voc_root), ("--sbd-root", args.sbd_root),
                                            ("--points", args.points)) if not value]
        if missing:
            raise SystemExit(f"pcam build-index --name {args.name} needs {', '.join(missing)}")
        index = build_index(args.name, args.voc_root, args.sbd_root, args.points, strict=args.strict)
        index.image_reading = reading
    index.save(args.out)
    write_text(args.report_json, json.dumps(index.report, indent=1) + "\n")
    markdown = report_markdown(index.report, index.classes)
    write_text(args.report_md, markdown)
    print(markdown)
    print(skipped_summary(index.report.get("skipped")), file=sys.stderr)
    return 0
