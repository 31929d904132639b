"""One "What's the point" training sample: DeepLab's augmentation, with the clicks carried along.

The image goes through exactly the steps (and the random draws, in the same order) of
``pcam_core.deeplab.training.random_scale_crop_flip``: scale U[scale_range] (bilinear),
normalise, crop or pad to ``crop_size`` (padding 0 in normalised space), horizontal flip. Each
click moves with it: (x, y) scales by the size ratio, its pixel is floor(x), floor(y), and it
is kept when the crop holds it.

Bearman et al. train on whole images. A crop does not hold every class of its image, so the
image-level sets of Eq. 2 are restricted to what is known about the crop:

* present L: the background, and every class with a click inside the crop;
* absent L': every object class the image-level label says is absent from the whole image;
* a class of the image without a click in the crop is in neither (it may or may not be there).

The background counts as present in every crop, as in Bearman's L for VOC images (N = 21
classes, background included): almost every image and crop holds some background.

Click weights alpha_i (Eq. 3): ``uniform`` = 1/n with n the image's clicks (the paper's
1Point setting), ``rank`` = 1/2^(r-1) for the r-th click of a class (the paper's weighted
AllPoints: the first instance 1, the second 1/2, ...). A click cropped out drops its term.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.dataset_index import Click
from pcam_core.common.image_io import normalize

POINT_WEIGHTINGS = ("uniform", "rank")


def click_weights(clicks: Sequence[Click], weighting: str) -> list[float]:
    """alpha_i of each click of one image (see the module docstring)."""
    if weighting == "uniform":
        return [1.0 / len(clicks)] * len(clicks) if clicks else []
    if weighting == "rank":
        return [0.5 ** (max(1, c.rank) - 1) for c in clicks]
    raise ValueError(f"wtp.point_weighting must be one of {POINT_WEIGHTINGS}, got {weighting!r}")


def _axis_window(size: int, crop_size: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """(source start, destination start, length) along one axis, drawn as DeepLab draws it."""
    if size > crop_size:
        return int(rng.integers(0, size - crop_size + 1)), 0, crop_size
    return 0, int(rng.integers(0, crop_size - size + 1)), size


def click_sample(rgb: np.ndarray, clicks: Sequence[Click], weights: Sequence[float],
                 crop_size: int, scale_range: Sequence[float], rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]:
    """(image, point labels, point weights, classes clicked in the crop) of one sample.

    image: float32 crop x crop x 3, normalised; point labels: uint8 (255 where no click);
    point weights: float32 (alpha_i at the clicked pixels, 0 elsewhere).
    """
    height, width = rgb.shape[:2]
    scale = rng.uniform(scale_range[0], scale_range[1])
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = normalize(np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR)))

    rows, cols = _axis_window(new_h, crop_size, rng), _axis_window(new_w, crop_size, rng)
    out_image = np.zeros((crop_size, crop_size, 3), np.float32)
    out_image[rows[1]:rows[1] + rows[2], cols[1]:cols[1] + cols[2]] = \
        image[rows[0]:rows[0] + rows[2], cols[0]:cols[0] + cols[2]]
    flip = rng.random() < 0.5

    labels = np.full((crop_size, crop_size), IGNORE_INDEX, np.uint8)
    point_weights = np.zeros((crop_size, crop_size), np.float32)
    clicked: set[int] = set()
    # heaviest first: where two clicks land on one pixel after a downscale, the first keeps it
    for order in sorted(range(len(clicks)), key=lambda i: -weights[i]):
        click = clicks[order]
        r = min(int(click.y * new_h / height), new_h - 1) - rows[0] + rows[1]
        c = min(int(click.x * new_w / width), new_w - 1) - cols[0] + cols[1]
        inside_rows = rows[1] <= r < rows[1] + rows[2]
        inside_cols = cols[1] <= c < cols[1] + cols[2]
        if not (inside_rows and inside_cols):
            continue
        if flip:
            c = crop_size - 1 - c
        clicked.add(click.cls)
        if labels[r, c] == IGNORE_INDEX:
            labels[r, c] = click.cls
            point_weights[r, c] = weights[order]
    if flip:
        out_image = out_image[:, ::-1]
    return np.ascontiguousarray(out_image), labels, point_weights, clicked


def image_level_sets(image_classes: Sequence[int], clicked: set[int], num_classes: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(present, absent) bool vectors over the C classes for one crop (module docstring)."""
    present = np.zeros(num_classes, bool)
    present[0] = True
    present[sorted(clicked)] = True
    absent = np.ones(num_classes, bool)
    absent[0] = False
    absent[list(image_classes)] = False
    return present, absent
