"""Readers for the real data layouts: VOC split lists and masks, SBD .mat masks, and the
"What's the point" click file, with every known quirk of that file counted, not hidden.

Click quirks (spec §8.5): points with x >= W or y >= H, negative coordinates, unknown class
ids, malformed entries, ids with empty lists, ids missing from the file, and ids in the file
that the dataset does not have. A click is valid when 0 <= x < W, 0 <= y < H (x = column,
y = row, floats allowed) and 1 <= cls <= 20.

Image-level labels come from VOC's ``Annotations/<id>.xml`` when present (as IRN builds its
``cls_labels.npy``: every ``<object>``, difficult and truncated ones included), so that a class
whose only click is unusable still labels its image.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from pcam_core.common.class_list import ClassList
from pcam_core.common.dataset_index import Click
from pcam_core.common.label_png import read_label_png
from pcam_core.common.sbd_mask import read_sbd_mask  # noqa: F401  (the VOC layout's readers, in one place)

# The 21 PASCAL VOC segmentation classes (background, then the 20 objects alphabetically):
# the class list of the voc2012 and demo datasets. Only this reader and the summary's quoted
# paper columns know these names; every stage takes its classes from the dataset index.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
NUM_OBJECT_CLASSES = len(VOC_CLASSES) - 1  # 20: "What's the point" cls ids are 1..20
_OBJECT_CLASS_IDS = {name: i for i, name in enumerate(VOC_CLASSES) if i > 0}

read_voc_mask = read_label_png


def voc_class_list() -> ClassList:
    """VOC's classes with the VOC colour map (the colours of VOC's own ground-truth PNGs)."""
    return ClassList.from_names(VOC_CLASSES)


def read_split_list(path: str | Path) -> list[str]:
    """Image ids of a split file, one per line, kept as strings (ids like 2007_000032)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split list not found")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_annotation_classes(path: str | Path) -> tuple[int, ...]:
    """Sorted VOC ids (1..20) of every ``<object>`` of an ``Annotations/<id>.xml``.

    Difficult and truncated objects count, as in IRN's labels. Only an object's own
    ``<name>`` is read: VOC's person layout nests ``<part><name>hand</name></part>`` in it.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except ET.ParseError as error:
        raise ValueError(f"{path}: malformed XML ({error})") from None
    if root.tag != "annotation":
        raise ValueError(f"{path}: root element is <{root.tag}>, expected <annotation> "
                         "(not a VOC Annotations file?)")
    ids = set()
    for number, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{path}: <object> number {number} has no <name>")
        if name not in _OBJECT_CLASS_IDS:
            raise ValueError(f"{path}: <object> number {number} names unknown class {name!r}; "
                             f"expected one of VOC's {NUM_OBJECT_CLASSES} classes")
        ids.add(_OBJECT_CLASS_IDS[name])
    return tuple(sorted(ids))


def read_annotation_folder(folder: str | Path, ids) -> dict[str, tuple[int, ...]]:
    """Classes of each id that has ``<folder>/<id>.xml``; ids without a file are left out
    (the caller counts them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Annotations folder not found")
    out = {}
    for image_id in ids:
        path = folder / f"{image_id}.xml"
        if path.is_file():
            out[image_id] = read_annotation_classes(path)
    return out


def train_aug_ids(voc_train: list[str], sbd_train: list[str], sbd_val: list[str],
                  voc_val: list[str]) -> list[str]:
    """VOC train ∪ SBD train ∪ SBD val − VOC val, in that order, each id once.

    SBD's own lists contain VOC val ids; keeping them would train on the test images.
    """
    excluded = set(voc_val)
    seen: dict[str, None] = {}
    for image_id in (*voc_train, *sbd_train, *sbd_val):
        if image_id not in excluded:
            seen.setdefault(image_id, None)
    return list(seen)


def load_click_json(path: str | Path) -> dict:
    """The raw click file: an object mapping image id -> list of click dicts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: click file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); dataset.points: correct the file, "
                         "or leave the key empty to download it again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping image ids to click lists "
                         "(the 'What's the point' layout)")
    return data


@dataclass
class ClickReport:
    """Counts of every quirk met while validating the click file."""

    images: int = 0
    clicks_in_file: int = 0
    valid_clicks: int = 0
    out_of_bounds: int = 0  # x >= W or y >= H
    negative: int = 0  # x < 0 or y < 0
    unknown_class: int = 0  # cls not in 1..20
    malformed: int = 0  # not a dict with numeric cls/x/y
    empty_ids: int = 0  # id present with an empty list
    missing_ids: int = 0  # dataset image absent from the file
    ids_not_in_dataset: int = 0  # file id the dataset does not have
    clicks_on_skipped_images: int = 0  # entries of images the index skipped (bad_input)
    clicks_per_class: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # quirk -> a few image ids

    def note(self, quirk: str, image_id: str) -> None:
        setattr(self, quirk, getattr(self, quirk) + 1)
        ids = self.examples.setdefault(quirk, [])
        if len(ids) < 5 and image_id not in ids:
            ids.append(image_id)

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("clicks_per_class", "examples")}
        out["clicks_per_class"] = {str(k): v for k, v in sorted(self.clicks_per_class.items())}
        out["examples"] = self.examples
        return out


def _number(value) -> float | None:
    """A finite JSON number as float, else None (strings, booleans, NaN and inf are malformed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def validate_clicks(raw: dict, sizes: dict[str, tuple[int, int]], problems=None,
                    skipped=frozenset(), click_file: str = "clicks"
                    ) -> tuple[dict[str, tuple[Click, ...]], ClickReport]:
    """Keep the valid clicks of each dataset image and count every quirk.

    ``sizes`` maps each dataset image id to (height, width). Returns id -> valid clicks (an
    empty tuple for ids with none) and the report. ``problems`` (a ``bad_input.InputProblems``)
    also gets every unusable click by place (``<click_file>:id[k]``), for ``strict``; the
    clicks of the ``skipped`` ids (images the index left out) are counted as such, not as
    unknown ids.
    """
    report = ClickReport(images=len(sizes))
    clicks: dict[str, tuple[Click, ...]] = {}

    def unusable(quirk: str, image_id: str, k: int | None = None) -> None:
        report.note(quirk, image_id)
        if problems is not None:
            kind = "click_image_not_found" if quirk == "ids_not_in_dataset" else f"click_{quirk}"
            problems.note(kind, f"{click_file}:{image_id}" + ("" if k is None else f"[{k}]"))

    for image_id, entries in raw.items():
        if image_id in skipped:
            report.clicks_on_skipped_images += len(entries) if isinstance(entries, list) else 1
        elif image_id not in sizes:
            unusable("ids_not_in_dataset", image_id)
    for image_id, (height, width) in sizes.items():
        entries = raw.get(image_id)
        if entries is None:
            report.note("missing_ids", image_id)
            clicks[image_id] = ()
            continue
        if not isinstance(entries, list):
            unusable("malformed", image_id)
            clicks[image_id] = ()
            continue
        if not entries:
            report.note("empty_ids", image_id)
        kept = []
        for k, entry in enumerate(entries):
            report.clicks_in_file += 1
            if not isinstance(entry, dict):
                unusable("malformed", image_id, k)
                continue
            cls, x, y = _number(entry.get("cls")), _number(entry.get("x")), _number(entry.get("y"))
            rank = _number(entry.get("rank", 1))
            if (cls is None or x is None or y is None or rank is None or cls != int(cls)
                    or rank != int(rank)):
                unusable("malformed", image_id, k)
                continue
            if not 1 <= cls <= NUM_OBJECT_CLASSES:
                unusable("unknown_class", image_id, k)
                continue
            if x < 0 or y < 0:
                unusable("negative", image_id, k)
                continue
            if x >= width or y >= height:
                unusable("out_of_bounds", image_id, k)
                continue
            kept.append(Click(int(cls), x, y, int(rank)))
            report.valid_clicks += 1
            report.clicks_per_class[int(cls)] += 1
        clicks[image_id] = tuple(kept)
    return clicks, report
