"""The 21 PASCAL VOC segmentation classes, their palette, and label-PNG input/output.

Segmentation ids: 0 = background, 1..20 = the object classes in alphabetical order,
255 = void (ignored by every loss and by the evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(VOC_CLASSES)  # 21, background included
NUM_OBJECT_CLASSES = NUM_CLASSES - 1  # 20, the image-level label vector length
IGNORE_INDEX = 255


def voc_palette() -> list[int]:
    """The VOC colour map (768 values), the one every VOC ground-truth PNG carries."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.extend((r, g, b))
    return palette


_PALETTE = voc_palette()


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label map as class indices (uint8 H x W).

    VOC masks are palette ("P") PNGs: the pixel values ARE the class indices, so they are
    read as-is and never converted to RGB (an RGB conversion returns colours).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(
                    f"{path}: label PNG has mode {image.mode!r}; expected a palette ('P') or "
                    "greyscale ('L') image holding class indices"
                )
            return np.asarray(image, dtype=np.uint8).copy()
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read label PNG ({error})") from error


def label_to_image(label: np.ndarray) -> Image.Image:
    """Wrap a uint8 class-index map in a palette image with the VOC colours."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label map must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    image = Image.fromarray(label, mode="P")
    image.putpalette(_PALETTE)
    return image


def write_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a class-index map as a VOC palette PNG, atomically (temp name + rename)."""
    from pcam_core.atomic_output import atomic_path

    with atomic_path(path) as tmp:
        label_to_image(label).save(tmp, format="PNG")
