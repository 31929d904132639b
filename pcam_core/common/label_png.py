"""Label maps as PNG files: class indices in, class indices out (palette PNGs, never RGB).

A label map is uint8 H x W holding segmentation ids (0 = background, 1..N, 255 = void).
Written as palette ("P") PNGs: the pixel values ARE the ids and the palette only colours
them (the dataset's class colours when given, the VOC colour map otherwise), so any viewer
shows colours while every reader gets ids back. Read: palette or single-channel ("L")
PNGs; an RGB PNG holds colours, not ids, and is refused with its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pcam_core.common.class_list import default_palette

_DEFAULT_PALETTE = default_palette()


def read_label_png(path: str | Path) -> np.ndarray:
    """A label map as class indices (uint8 H x W), upright (EXIF orientation applied like images)."""
    from pcam_core.common.image_io import upright

    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(
                    f"{path}: label PNG has mode {image.mode!r}; expected a palette ('P') or "
                    "greyscale ('L') image holding class indices"
                )
            return np.asarray(upright(image), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: label PNG not found") from None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read label PNG ({error})") from error


def find_label_files(directory: str | Path) -> dict[str, Path]:
    """Image id -> label PNG under a stage's output folder, searched recursively.

    Ids of custom datasets are relative paths (``plate1/tile_003``), so outputs mirror the
    user's folders. Hidden files (temporary names of unfinished writes) are skipped.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: label folder not found")
    found = {}
    for path in sorted(directory.rglob("*.png")):
        if not path.name.startswith("."):
            found[path.relative_to(directory).with_suffix("").as_posix()] = path
    return found


def label_to_image(label: np.ndarray, palette: list[int] | None = None) -> Image.Image:
    """Wrap a uint8 class-index map in a palette image (``ClassList.palette()`` or the VOC map)."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label map must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    image = Image.fromarray(label, mode="P")
    image.putpalette(palette or _DEFAULT_PALETTE)
    return image


def write_label_png(path: str | Path, label: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a class-index map as a palette PNG, atomically (temp name + rename)."""
    from pcam_core.common.atomic_output import atomic_path

    with atomic_path(path) as tmp:
        label_to_image(label, palette).save(tmp, format="PNG")
