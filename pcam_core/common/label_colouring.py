"""Label maps as pictures: class colours, overlays on the image, and the legend of a figure.

One colouring for every picture the project draws (``pcam predict --overlay``, ``pcam
qualitative-grid``), so a class has the same colour in an overlay, a grid and the palette
PNGs (``label_png``): the dataset's own colours (``ClassList.colours``), the VOC colour map
for ids the class list does not cover.

Void (id 255, pixels every loss and the evaluation ignore) is drawn in ``VOID_COLOUR``, the
light cream (224, 224, 192) that VOC's own masks give their object borders: it is the
colour map's entry 255, so a palette PNG opened in a viewer shows void the same way.

Only the legend handles need matplotlib, and they import it themselves: ``pcam predict``
imports this module and must not pay for it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from pcam_core.common.class_list import IGNORE_INDEX, ClassList, Colour, colour_map

VOID_COLOUR: Colour = colour_map()[IGNORE_INDEX]  # (224, 224, 192), as VOC shows void
VOID_NAME = "void"
# Weight of the class colour over object pixels in the overlay; background pixels keep the
# photo, so the overlay reads as "what was found" rather than a darkened picture.
OVERLAY_ALPHA = 0.5

# What gives the colours: a class list, a 768-value palette (``ClassList.palette()``, as
# stored with checkpoints' class lists), or None for the VOC colour map.
Colours = ClassList | Sequence[int] | None


def colour_table(colours: Colours = None) -> np.ndarray:
    """uint8 (256, 3): the RGB colour of every id 0..255, void always ``VOID_COLOUR``."""
    if isinstance(colours, ClassList):
        palette = colours.palette()
    elif colours is None:
        palette = [v for colour in colour_map() for v in colour]
    else:
        palette = list(colours)
        if len(palette) % 3 or not 3 <= len(palette) <= 768:
            raise ValueError(f"a palette is up to 256 RGB triples (a multiple of 3 values, at most 768), "
                             f"got {len(palette)} values")
        # ids past a short palette take the colour map, as PIL's palette images would show black
        palette += [v for colour in colour_map()[len(palette) // 3:] for v in colour]
    table = np.asarray(palette, dtype=np.uint8).reshape(256, 3).copy()
    table[IGNORE_INDEX] = VOID_COLOUR
    return table


def _check_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"label map must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    return label


def colour_labels(label: np.ndarray, colours: Colours = None) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a label map (uint8 H x W, 255 = void) in the class colours."""
    return colour_table(colours)[_check_label(label)]


def overlay_image(rgb: np.ndarray, label: np.ndarray, alpha: float = OVERLAY_ALPHA,
                  palette: Colours = None) -> Image.Image:
    """Class colours blended over the photo on object pixels (label 1..254).

    Background and void pixels keep the photo unchanged (the blend weight there is 0).
    """
    label = _check_label(label)
    colour = colour_table(palette)[label].astype(np.float32)
    weight = np.where((label > 0) & (label < IGNORE_INDEX), alpha, 0.0)[..., None].astype(np.float32)
    blended = rgb.astype(np.float32) * (1 - weight) + colour * weight
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def legend_entries(classes: ClassList, labels: Iterable[np.ndarray] = (),
                   extra_ids: Iterable[int] = (), void: bool = True) -> list[tuple[str, Colour]]:
    """(name, colour) of the ids present in any of ``labels`` (or in ``extra_ids``), in id order.

    Void comes last (id 255) when present and ``void`` is set. An id past the class list (a
    label map of another dataset) is named by its number, so nothing shown goes unexplained.
    """
    present: set[int] = {int(i) for i in extra_ids}
    for label in labels:
        present.update(int(i) for i in np.unique(_check_label(label)))
    table = colour_table(classes)
    entries = []
    for i in sorted(present):
        if i == IGNORE_INDEX:
            if void:
                entries.append((VOID_NAME, VOID_COLOUR))
            continue
        name = classes.names[i] if i < classes.num_classes else f"id {i}"
        entries.append((name, tuple(int(v) for v in table[i])))
    return entries


def legend_handles(entries: Sequence[tuple[str, Colour]]) -> list:
    """matplotlib patches for ``legend_entries`` (pass them as ``legend(handles=...)``)."""
    from matplotlib.patches import Patch

    # a thin dark edge, so black (background) and cream (void) swatches show on white
    return [Patch(facecolor=np.asarray(colour) / 255.0, edgecolor="0.3", linewidth=0.5, label=name)
            for name, colour in entries]
