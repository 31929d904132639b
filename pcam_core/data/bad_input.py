"""Bad input met while building the index: what is skipped and counted, what ``strict``
refuses, and what always stops the build.

Skippable problems (``KINDS``: an image that cannot be decoded or is listed but missing, an
unusable click, a training image left without one, ...) are left out of the index, so no
later stage meets them, and counted with examples in the data report's ``skipped`` section
and in the stage log. With the config's ``strict: true`` the build instead looks at
everything and then stops with one error listing every problem by file (up to
``LISTED_PER_KIND`` of each kind) and how to fix each kind: for data that must be exactly
as delivered.

Never skipped, whatever ``strict`` says: a mask whose size differs from its image or whose
values are not class ids (skipping it would change what is scored), a split left empty, a
click file that cannot be parsed at all (usually a wrong format or export setting, which
would drop every click). These raise at once, naming the file and the fix.
"""

from __future__ import annotations

import numpy as np

from pcam_core.common.class_list import IGNORE_INDEX

# kind -> (what it is, how to fix it); the order of the report and of the strict error.
KINDS = {
    "image_cannot_be_decoded": (
        "image file that cannot be decoded (corrupt or truncated)",
        "replace it with a good copy (re-export or copy it again), or delete it"),
    "image_listed_but_missing": (
        "image listed in a split but not found",
        "add the image, or remove its id from the split list"),
    "mask_without_image": (
        "mask whose image is not in the dataset",
        "name it <image id>.png (the image's path under dataset.images, ending .png), or remove it"),
    "click_malformed": (
        "click entry that is not a readable click",
        "fix the entry: x and y finite numbers, a class name or number"),
    "click_unknown_class": (
        "click whose class is not in the class list",
        "add the class to dataset.classes, or correct the label"),
    "click_negative": (
        "click with a negative coordinate",
        "correct it: x is the column, y the row, from the top-left corner (0, 0)"),
    "click_out_of_bounds": (
        "click outside its image (x >= width or y >= height)",
        "correct it; clicks refer to the upright image (EXIF orientation applied), x = column"),
    "click_image_not_found": (
        "click for an image that is not in the dataset",
        "add the image, or correct the image name in the click file"),
    "training_image_without_click": (
        "train_aug image with no usable click (no image-level label: left out of training)",
        "click it, or list it in the val split"),
}
EXAMPLES = 5  # per kind in the data report
LISTED_PER_KIND = 20  # per kind in the strict error


class BadInputError(ValueError):
    """The input cannot be used as it is; the message names the files and the fix."""


class InputProblems:
    """Every skippable problem found while building one index, with where it is."""

    def __init__(self):
        self.found: dict[str, list[str]] = {kind: [] for kind in KINDS}

    def note(self, kind: str, where: str) -> None:
        self.found[kind].append(where)

    def note_all(self, kind: str, places) -> None:
        self.found[kind].extend(places)

    def total(self) -> int:
        return sum(map(len, self.found.values()))

    def section(self, strict: bool) -> dict:
        """The data report's ``skipped`` section: every kind's count, a few examples each."""
        return {"strict": strict,
                "counts": {kind: len(places) for kind, places in self.found.items()},
                "examples": {kind: places[:EXAMPLES] for kind, places in self.found.items() if places}}

    def refuse_if_strict(self, strict: bool) -> None:
        """Under ``strict`` raise one error listing every problem; else do nothing."""
        if not strict or not self.total():
            return
        lines = [f"strict is true and the input has {self.total():,} problem(s) that strict: false "
                 "would skip and count (set strict: false in the config to do that):"]
        for kind, places in self.found.items():
            if not places:
                continue
            what, fix = KINDS[kind]
            lines.append(f"- {len(places):,} x {what}; fix: {fix}:")
            lines += [f"    {where}" for where in places[:LISTED_PER_KIND]]
            if len(places) > LISTED_PER_KIND:
                lines.append(f"    ... and {len(places) - LISTED_PER_KIND:,} more")
        raise BadInputError("\n".join(lines))


def skipped_summary(section: dict | None) -> str:
    """One line for the stage log: what was skipped and counted, or that nothing was."""
    counts = {k: v for k, v in (section or {}).get("counts", {}).items() if v}
    if not counts:
        return "bad input: nothing skipped"
    listed = "; ".join(f"{count:,} x {KINDS[kind][0] if kind in KINDS else kind}"
                       for kind, count in counts.items())
    return (f"bad input skipped and counted (strict: false): {listed}. Examples in the data "
            "report's 'Skipped input'; strict: true makes these an error")


def check_mask(mask: np.ndarray, mask_path, image_size: tuple[int, int], image_path,
               num_object_classes: int) -> None:
    """A mask must have its image's (upright) size and hold only class ids and 255."""
    if mask.shape != tuple(image_size):
        raise BadInputError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path} is "
            f"{image_size[1]}x{image_size[0]} (upright); a mask must match its image pixel for "
            "pixel: export it at the image's size (EXIF orientation applies to both)")
    bad = np.unique(mask[(mask > num_object_classes) & (mask != IGNORE_INDEX)])
    if bad.size:
        raise BadInputError(
            f"{mask_path}: mask values {bad[:5].tolist()} are not class ids 0..{num_object_classes} "
            "or 255 (ignore): relabel those pixels, or add their classes to the class list")


def require_nonempty_splits(before: dict[str, list[str]], after: dict[str, list[str]],
                            problems: InputProblems) -> None:
    """A split that listed images before the skips must list some after them."""
    for name, ids in after.items():
        if before.get(name) and not ids:
            raise BadInputError(
                f"split {name} is empty: all {len(before[name]):,} of its images were skipped "
                f"({skipped_summary(problems.section(False))}); fix those images")


def require_training_images(train_aug: int, trainable: int, problems: InputProblems) -> None:
    """At least one train_aug image must have an image-level label to train on."""
    if trainable == 0:
        raise BadInputError(
            f"no image to train on: none of the {train_aug:,} train_aug images has a usable "
            f"click ({skipped_summary(problems.section(False))}); check that the click file "
            "matches the images (names, classes, coordinates)")
