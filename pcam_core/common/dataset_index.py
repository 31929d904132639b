"""The dataset index: the one contract every stage after the data stage reads.

One JSON file per run (``results/<run>/data/index.json``) holding the dataset's class list
(names and colours, background first), how its images are read (``ImageReading``: the
intensity window of 16-bit images, the background of transparent pixels) and, per image id,
its image path, size (upright), split membership, image-level classes, valid clicks and
ground-truth paths. JSON keeps it readable and diff-able; 12,031 VOC records load in about
0.1 s.

Classes are segmentation ids (1..N, never 0; N = ``index.classes.num_object_classes``). Clicks are ``(cls, x, y, rank)`` with x the
column and y the row in original-image pixels; floats are kept as the annotators' file has
them and the pixel hit is ``(int(y), int(x))`` (the pixel whose square contains the click).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pcam_core.common.atomic_output import write_text
from pcam_core.common.class_list import ClassList
from pcam_core.common.image_io import ImageReading

# 2: the class list and the image-reading settings are part of the index.
INDEX_FORMAT = "pcam-dataset-index/2"
SPLITS = ("train", "val", "train_aug")


@dataclass(frozen=True)
class Click:
    """One annotator click: class id (1..N), column x, row y (upright image), rank (1 = first)."""

    cls: int
    x: float
    y: float
    rank: int = 1

    @property
    def pixel(self) -> tuple[int, int]:
        """(row, column) of the clicked pixel."""
        return int(self.y), int(self.x)


@dataclass(frozen=True)
class ImageRecord:
    """Everything the stages need to know about one image."""

    id: str
    image: str  # path of the image file (JPEG in the VOC layout; any IMAGE_EXTENSIONS file in custom)
    height: int
    width: int
    splits: tuple[str, ...]
    classes: tuple[int, ...]  # image-level label (training): the VOC XML classes when there are
    #                           Annotations, else the classes with >= 1 valid click
    gt_classes: tuple[int, ...]  # classes present in the GT mask, () when there is no mask
    clicks: tuple[Click, ...] = field(default=())
    gt_png: str | None = None  # label PNG (palette or single-channel ids): the evaluation ground truth
    gt_mat: str | None = None  # SBD cls/<id>.mat (extra full masks, only for "pcam_full")

    def export_classes(self) -> tuple[int, ...]:
        """Classes whose maps are exported for this image.

        train and val images use their GT image-level classes, as the paper does for its
        Tables 1-2; every other train_aug image uses its click classes (the only labels a
        point-supervised user has).
        """
        if ("train" in self.splits or "val" in self.splits) and self.gt_classes:
            return self.gt_classes
        return self.classes

    def known_empty(self) -> bool:
        """A train/val image whose ground truth holds no object (an empty tile).

        Its maps are not exported (no class); background is its only label and scoring needs
        one. An image without clicks and without a mask is NOT known to be empty: it carries
        no label at all and stays out of training.
        """
        return (("train" in self.splits or "val" in self.splits) and not self.gt_classes
                and bool(self.gt_png or self.gt_mat) and not self.export_classes())

    def load_gt_mask(self) -> np.ndarray | None:
        """The full ground-truth mask (uint8, 255 = void): VOC PNG first, then SBD .mat."""
        if self.gt_png:
            from pcam_core.common.label_png import read_label_png

            return read_label_png(self.gt_png)
        if self.gt_mat:
            from pcam_core.common.sbd_mask import read_sbd_mask

            return read_sbd_mask(self.gt_mat)
        return None


class DatasetIndex:
    """All records of a dataset plus its split lists (in file order), its class list and how
    its images are read."""

    def __init__(self, records: Iterable[ImageRecord], splits: dict[str, list[str]],
                 dataset: str, classes: ClassList, report: dict | None = None,
                 image_reading: ImageReading | None = None):
        self.records: dict[str, ImageRecord] = {r.id: r for r in records}
        self.splits = {name: list(ids) for name, ids in splits.items()}
        self.dataset = dataset
        self.classes = classes
        self.image_reading = image_reading or ImageReading()
        self.report = report or {}
        for name, ids in self.splits.items():
            missing = [i for i in ids if i not in self.records]
            if missing:
                raise ValueError(f"split {name!r} lists ids with no record, e.g. {missing[:3]}")
        top = classes.num_object_classes
        for record in self.records.values():
            bad = [c for c in (*record.classes, *record.gt_classes, *(k.cls for k in record.clicks))
                   if not 1 <= c <= top]
            if bad:
                raise ValueError(f"image {record.id!r} names class ids {sorted(set(bad))} outside "
                                 f"1..{top} of the class list")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, image_id: str) -> ImageRecord:
        return self.records[image_id]

    def split(self, name: str) -> list[ImageRecord]:
        """Records of one split, in the split file's order."""
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; the index has {sorted(self.splits)}")
        return [self.records[i] for i in self.splits[name]]

    def training_records(self) -> list[ImageRecord]:
        """train_aug images that have at least one valid click (the rest are counted and left out)."""
        return [r for r in self.split("train_aug") if r.classes]

    def all_ids(self) -> list[str]:
        """train_aug then val ids, each once: the list that per-image stages shard."""
        seen: dict[str, None] = {}
        for name in ("train_aug", "train", "val"):
            for image_id in self.splits.get(name, []):
                seen.setdefault(image_id, None)
        return list(seen)

    # ---------------------------------------------------------------- file format
    def to_json(self) -> dict:
        return {
            "format": INDEX_FORMAT,
            "dataset": self.dataset,
            "classes": self.classes.to_json(),
            "image_reading": self.image_reading.to_json(),
            "splits": self.splits,
            "images": {
                r.id: {
                    "image": r.image, "height": r.height, "width": r.width,
                    "splits": list(r.splits), "classes": list(r.classes),
                    "gt_classes": list(r.gt_classes),
                    "clicks": [[c.cls, c.x, c.y, c.rank] for c in r.clicks],
                    "gt_png": r.gt_png, "gt_mat": r.gt_mat,
                }
                for r in self.records.values()
            },
            "report": self.report,
        }

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.to_json(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> "DatasetIndex":
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path}: not a pcam dataset index of this version (format "
                             f"{data.get('format')!r}, expected {INDEX_FORMAT!r}); rebuild it "
                             "(delete it and run the workflow's data target)")
        records = [
            ImageRecord(
                id=image_id, image=d["image"], height=d["height"], width=d["width"],
                splits=tuple(d["splits"]), classes=tuple(d["classes"]),
                gt_classes=tuple(d["gt_classes"]),
                clicks=tuple(Click(int(c[0]), c[1], c[2], int(c[3])) for c in d["clicks"]),
                gt_png=d["gt_png"], gt_mat=d["gt_mat"],
            )
            for image_id, d in data["images"].items()
        ]
        return cls(records, data["splits"], data["dataset"],
                   ClassList.from_json(data["classes"], f"{path}: classes"), data.get("report"),
                   ImageReading.from_json(data.get("image_reading")))

    def read_image(self, record: ImageRecord):
        """The record's image as uint8 RGB (H, W, 3), read as every stage reads it."""
        from pcam_core.common.image_io import read_rgb

        return read_rgb(record.image, self.image_reading)


def read_shard_ids(path: str | Path) -> list[str]:
    """Image ids of one shard list (one id per line)."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def read_id_list(path: str | Path, known, what: str = "id list", normalise=lambda text: text,
                 unknown: list[str] | None = None) -> list[str]:
    """Ids of a user's list file (one per line, '#' comments), in file order, each once.

    ``normalise`` maps a line to an id (e.g. drops an image extension); an id not in
    ``known`` is an error naming the file and line, so a typo never shrinks a split silently,
    unless the caller passes an ``unknown`` list: each such line is then appended to it as
    ``file:line: 'text'`` (for the caller to count) and left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found")
    ids: dict[str, None] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        image_id = normalise(text)
        if image_id not in known:
            if unknown is None:
                raise ValueError(f"{path}:{number}: {text!r} is not an image id of the dataset")
            unknown.append(f"{path}:{number}: {text!r}")
            continue
        ids.setdefault(image_id, None)
    return list(ids)


def hash_ordered(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Records sorted by the SHA-256 of their id: a sample taken from the front does not
    depend on how the dataset lists its images, and adding images never changes which of the
    old ones come first (calibration subsets, the report's qualitative grid)."""
    return sorted(records, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())


def iter_records(index: DatasetIndex, ids: Iterable[str]) -> Iterator[ImageRecord]:
    for image_id in ids:
        yield index[image_id]


def record_as_dict(record: ImageRecord) -> dict:
    return asdict(record)
