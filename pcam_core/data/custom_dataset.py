"""The ``custom`` dataset: a user's folder of images, their class list, their clicks.

Layout (config ``dataset:`` with ``name: custom``):

* ``images``: a folder searched recursively for IMAGE_EXTENSIONS files (hidden files and
  folders are skipped). The image id is the path relative to it without the extension
  (``plate1/tile_003``). Two files with one id (``a.png`` and ``a.tif``) are an error.
* ``classes``: the object class names in order (ids 1..N); optional colours.
* ``clicks`` + ``clicks_format``: a click file or folder in one of ``click_formats.FORMATS``.
  Clicks refer to the UPRIGHT image (EXIF orientation applied), x = column, y = row.
* ``masks`` (optional): label PNGs named like the images (``<masks>/<id>.png``), palette or
  single-channel, pixel value = class id, 255 = ignore.
* splits: ``val`` (a file of ids) or ``val_fraction``. val images are never trained on;
  every other image is in ``train_aug`` (trained on when it has a click); ``train`` = the
  train_aug images that have a mask (scored for Tables 1-2 like VOC's train).

Every click not used is counted in the data report with its reason and example locations;
a file that cannot be parsed at all is an error naming it. Every image is decoded once here:
one that cannot be (corrupt, truncated) is left out and counted with the other skippable
problems, or with ``strict`` an error (``bad_input``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np

from pcam_core.common.class_list import IGNORE_INDEX, ClassList
from pcam_core.data.bad_input import (BadInputError, InputProblems, check_mask,
                                     require_nonempty_splits, require_training_images)
from pcam_core.data.click_formats import ClickFileError, RawClick, parse_clicks
from pcam_core.common.dataset_index import Click, DatasetIndex, ImageRecord, read_id_list
from pcam_core.common.image_io import IMAGE_EXTENSIONS, ImageReading, image_size
from pcam_core.data.data_report import count_click_noise, data_report
from pcam_core.common.label_png import read_label_png

EXAMPLES_PER_REASON = 5


def find_images(root: str | Path) -> dict[str, Path]:
    """id -> image file for every image under ``root`` (recursive, sorted, hidden entries skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset.images: {root} is not a folder")
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            image_id = path.relative_to(root).with_suffix("").as_posix()
            if image_id in found:
                raise ValueError(f"{found[image_id]} and {path} have the same image id {image_id!r}; "
                                 "rename one (the id is the path without the extension)")
            found[image_id] = path
    if not found:
        raise ValueError(f"dataset.images: no image ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return found


def strip_image_extension(reference: str) -> str:
    reference = reference.strip().replace("\\", "/")
    while reference.startswith("./"):
        reference = reference[2:]
    suffix = PurePosixPath(reference).suffix
    return reference[: -len(suffix)] if suffix.lower() in IMAGE_EXTENSIONS else reference


class ImageMatcher:
    """Maps the image references click files use (ids, relative paths, file names) to ids."""

    def __init__(self, ids):
        self.ids = set(ids)
        by_name: dict[str, list[str]] = {}
        for image_id in self.ids:
            by_name.setdefault(image_id.rsplit("/", 1)[-1], []).append(image_id)
        self.unique_names = {name: found[0] for name, found in by_name.items() if len(found) == 1}

    def match(self, reference: str | None) -> str | None:
        if not reference:
            return None
        reference = reference.strip().replace("\\", "/")
        for candidate in (reference, strip_image_extension(reference)):
            if candidate in self.ids:
                return candidate
        return self.unique_names.get(strip_image_extension(reference).rsplit("/", 1)[-1])


def resolve_class(label, classes: ClassList) -> int | None:
    """Class id of a click's label: a class name first, then a class number 1..N."""
    if label is None or isinstance(label, bool):
        return None
    if isinstance(label, str):
        found = classes.id_of(label.strip())
        if found is not None:
            return found
        try:
            label = int(label.strip())
        except ValueError:
            return None
    if isinstance(label, int) and 1 <= label <= classes.num_object_classes:
        return label
    return None


class ClickCounts:
    """Counts and locations of every reason a click is not used (all of them: strict lists them)."""

    def __init__(self):
        self.places: dict[str, list[str]] = {}
        self.unknown_names: Counter = Counter()

    def note(self, reason: str, where: str) -> None:
        self.places.setdefault(reason, []).append(where)

    def count(self, reason: str) -> int:
        return len(self.places.get(reason, ()))

    def examples(self) -> dict[str, list[str]]:
        return {reason: places[:EXAMPLES_PER_REASON] for reason, places in self.places.items()}


# Click reasons that are bad input (bad_input kinds); non-point shapes are ignored by design.
UNUSABLE_CLICK_REASONS = ("malformed", "unknown_class", "negative", "out_of_bounds", "image_not_found")


def validate_custom_clicks(parsed, sizes: dict[str, tuple[int, int]], classes: ClassList,
                           problems: InputProblems | None = None, skipped=frozenset()
                           ) -> tuple[dict[str, tuple[Click, ...]], dict]:
    """Valid clicks per image id and the click section of the data report.

    ``problems`` also gets every unusable click by place (for ``strict``); clicks of the
    ``skipped`` ids (images the index left out) are counted as such, not as unknown images.
    """
    counts = ClickCounts()
    matcher = ImageMatcher([*sizes, *skipped])
    for where in parsed.malformed:
        counts.note("malformed", where)
    for where in parsed.non_point:
        counts.note("non_point_shape", where)
    kept: dict[str, list[Click]] = {image_id: [] for image_id in sizes}
    ranks: Counter = Counter()
    per_class: Counter = Counter()
    for click in parsed.clicks:
        image_id = matcher.match(click.image) or matcher.match(click.image_alt)
        if image_id is None:
            counts.note("image_not_found", f"{click.source} ({click.image})")
            continue
        if image_id in skipped:
            counts.note("clicks_on_skipped_images", click.source)
            continue
        cls = resolve_class(click.label, classes)
        if cls is None:
            counts.note("unknown_class", f"{click.source} ({click.label!r})")
            counts.unknown_names[str(click.label)] += 1
            continue
        height, width = sizes[image_id]
        if click.x < 0 or click.y < 0:
            counts.note("negative", click.source)
            continue
        if click.x >= width or click.y >= height:
            counts.note("out_of_bounds", f"{click.source} (x {click.x}, y {click.y}; image {width}x{height})")
            continue
        ranks[image_id, cls] += 1
        rank = click.rank if click.rank is not None else ranks[image_id, cls]
        kept[image_id].append(Click(cls, float(click.x), float(click.y), int(rank)))
        per_class[cls] += 1
    without = [image_id for image_id, found in kept.items() if not found]
    if problems is not None:
        for reason in UNUSABLE_CLICK_REASONS:
            problems.note_all(f"click_{reason}", counts.places.get(reason, ()))
    section = {
        "format": parsed.format,
        "files": parsed.files,
        "images": len(sizes),
        "clicks_in_file": len(parsed.clicks) + len(parsed.malformed),
        "valid_clicks": sum(per_class.values()),
        **{reason: counts.count(reason) for reason in
           ("out_of_bounds", "negative", "unknown_class", "malformed", "non_point_shape",
            "image_not_found", "clicks_on_skipped_images")},
        "images_without_clicks": len(without),
        "unknown_class_names": dict(sorted(counts.unknown_names.items())),
        "clicks_per_class": {str(k): v for k, v in sorted(per_class.items())},
        "examples": {**counts.examples(),
                     **({"images_without_clicks": without[:EXAMPLES_PER_REASON]} if without else {})},
    }
    return {image_id: tuple(found) for image_id, found in kept.items()}, section


def split_val(ids: list[str], with_mask: set[str], fraction: float) -> list[str]:
    """A deterministic val split: ``fraction`` of the images with a mask and of those without.

    Each image's place comes from a hash of its id, so adding images never moves the others
    between splits, and masked images are spread over both splits (val is scored only where
    masks exist, train too).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"dataset.val_fraction must be in [0, 1), got {fraction}")
    val = []
    for group in ([i for i in ids if i in with_mask], [i for i in ids if i not in with_mask]):
        order = sorted(group, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
        val += order[:int(round(fraction * len(group)))]
    return sorted(val, key=ids.index)


def build_custom_index(params: dict, reading: ImageReading | None = None,
                       progress=lambda items, desc: items, strict: bool = False) -> DatasetIndex:
    """Read the user's layout into a dataset index with its data report.

    Images that cannot be decoded, val-list lines naming no image, masks without an image and
    unusable clicks are left out and counted; ``strict`` makes them one error instead
    (``bad_input``). Mask problems and an empty split always stop the build.
    """
    start = time.perf_counter()
    classes = ClassList.from_object_classes(params.get("classes") or [])
    found = find_images(params["images"])
    problems = InputProblems()
    sizes = {}
    for image_id, path in progress(found.items(), "decoding images"):
        try:
            sizes[image_id] = image_size(path, decode=True)
        except ValueError as error:
            problems.note("image_cannot_be_decoded", str(error))
    images = {image_id: path for image_id, path in found.items() if image_id in sizes}
    skipped = set(found) - set(images)

    masks_root = Path(params["masks"]) if params.get("masks") else None
    gt: dict[str, tuple[str, tuple[int, ...]]] = {}
    masks_without_image = []
    if masks_root is not None:
        if not masks_root.is_dir():
            raise FileNotFoundError(f"dataset.masks: {masks_root} is not a folder")
        for path in sorted(masks_root.rglob("*.png")):
            mask_id = path.relative_to(masks_root).with_suffix("").as_posix()
            if mask_id not in found:
                masks_without_image.append(mask_id)
                problems.note("mask_without_image", str(path))
        for image_id in progress([i for i in images if (masks_root / f"{i}.png").is_file()],
                                 "reading masks"):
            path = masks_root / f"{image_id}.png"
            mask = read_label_png(path)
            check_mask(mask, path, sizes[image_id], images[image_id], classes.num_object_classes)
            gt[image_id] = (str(path), tuple(int(v) for v in np.unique(mask)
                                             if 0 < v < IGNORE_INDEX))

    ids = list(images)
    val_listed: list[str] = []  # the val file's lines, usable or not
    if params.get("val"):
        missing: list[str] = []
        known = read_id_list(params["val"], found, "dataset.val", strip_image_extension, missing)
        problems.note_all("image_listed_but_missing", missing)
        val_listed = known + missing
        val = [i for i in known if i in images]
    else:
        val = split_val(ids, set(gt), float(params.get("val_fraction", 0.0)))
    val_set = set(val)
    train_aug = [i for i in ids if i not in val_set]
    if not train_aug:
        raise BadInputError("every image is in val: nothing left to train on; list fewer ids in "
                            "dataset.val, or lower dataset.val_fraction")
    splits = {"train": [i for i in train_aug if i in gt], "val": val, "train_aug": train_aug}
    train_aug_set = set(train_aug)

    try:
        parsed = parse_clicks(params["clicks"], params.get("clicks_format", "auto"),
                              class_column=params.get("clicks_class_column", "label"))
    except ClickFileError as error:
        raise ClickFileError(f"{error}; dataset.clicks: correct or re-export it (README 'Your "
                             "own data' shows the layout of each clicks_format)") from None
    clicks, click_section = validate_custom_clicks(parsed, sizes, classes, problems, skipped)

    records, noise = [], Counter()
    for image_id in ids:
        gt_png, gt_classes = gt.get(image_id, (None, ()))
        valid = clicks[image_id]
        if gt_png is not None and valid:
            count_click_noise(noise, read_label_png(gt_png), valid)
        if image_id in train_aug_set and not valid:
            problems.note("training_image_without_click", str(images[image_id]))
        height, width = sizes[image_id]
        records.append(ImageRecord(
            id=image_id, image=str(images[image_id]), height=height, width=width,
            splits=tuple(name for name in ("train", "val", "train_aug") if image_id in splits[name]),
            classes=tuple(sorted({c.cls for c in valid})), gt_classes=gt_classes, clicks=valid,
            gt_png=gt_png, gt_mat=None))

    problems.refuse_if_strict(strict)
    require_nonempty_splits({"val": val_listed}, {"val": val}, problems)
    require_training_images(len(train_aug), sum(1 for r in records if r.classes and "train_aug" in r.splits),
                            problems)
    index = DatasetIndex(records, splits, dataset="custom", classes=classes, image_reading=reading)
    index.report = data_report(
        index, click_section, dict(noise), seconds=time.perf_counter() - start,
        sources={"images": str(params["images"]), "masks": str(masks_root or ""),
                 "clicks": str(params["clicks"])},
        masks={"images_with_mask": len(gt), "masks_without_image": len(masks_without_image),
               "masks_without_image_examples": masks_without_image[:EXAMPLES_PER_REASON]},
        split_note="val images are never in train_aug", skipped=problems.section(strict))
    return index
